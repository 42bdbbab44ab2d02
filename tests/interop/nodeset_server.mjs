// A node-opcua server whose address space is the standard nodeset plus one UANodeSet file: how another
// stack imports what `twin commission --export-nodeset FILE` writes.
// Usage: node nodeset_server.mjs PORT NODESET_FILE
// Prints "READY <endpoint>" once listening; exits with status 0 on SIGTERM or SIGINT.
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { serveUntilSignalled } from "./serve.mjs";

const [port, nodesetFile] = [Number(process.argv[2]), process.argv[3]];
const server = new OPCUAServer({
  port,
  hostname: "127.0.0.1",
  resourcePath: "/UA/nodeset",
  nodesets: [nodesets.standard, nodesetFile],
  serverInfo: { applicationUri: "urn:factory-twin:interop-server" },
});
await server.initialize();
await serveUntilSignalled(server);
