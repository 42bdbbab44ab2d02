// The shared tail of the interop servers: start, tell the test where (one "READY <endpoint>" line), and stop
// cleanly (exit status 0) on SIGTERM or SIGINT, running `onStop` first.
export async function serveUntilSignalled(server, onStop = () => {}) {
  await server.start();
  console.log(`READY ${server.getEndpointUrl()}`);
  let stopping = false;
  async function stop() {
    if (stopping) return;
    stopping = true;
    onStop();
    await server.shutdown(0);
    process.exit(0);
  }
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
