// An OPC-UA server built on node-opcua, an independent stack, for the twin's interoperability tests.
// It serves one variable of each built-in scalar type, a Double array and two changing values under
// Objects/Interop, with string NodeIds "Interop.<Name>" in the namespace urn:factory-twin:interop.
// Usage: node server.mjs PORT   (prints "READY <endpoint>" once listening; stops on SIGTERM/SIGINT)
import { OPCUAServer } from "node-opcua-server";
import { StatusCodes } from "node-opcua-status-code";
import { DataType, Variant, VariantArrayType } from "node-opcua-variant";

const port = Number(process.argv[2] || process.env.PORT || 48400);
const server = new OPCUAServer({
  port,
  hostname: "127.0.0.1",
  resourcePath: "/UA/interop",
  buildInfo: { productName: "factory-twin-interop", buildNumber: "1" },
  serverInfo: { applicationUri: "urn:factory-twin:interop-server" },
});
await server.initialize();

const namespace = server.engine.addressSpace.registerNamespace("urn:factory-twin:interop");
const folder = namespace.addObject({ organizedBy: server.engine.addressSpace.rootFolder.objects, browseName: "Interop" });

const scalars = {
  Boolean: [DataType.Boolean, true],
  SByte: [DataType.SByte, -100],
  Byte: [DataType.Byte, 200],
  Int16: [DataType.Int16, -30000],
  UInt16: [DataType.UInt16, 60000],
  Int32: [DataType.Int32, -2000000000],
  UInt32: [DataType.UInt32, 4000000000],
  Int64: [DataType.Int64, [0xffffffff, 0xfffffc18]], // 64-bit values as [high, low] uint32 words: -1000
  UInt64: [DataType.UInt64, [0, 123456789]],
  Float: [DataType.Float, 1.5],
  Double: [DataType.Double, -0.00225],
  String: [DataType.String, "Schicht 2 läuft"],
  DateTime: [DataType.DateTime, new Date(Date.UTC(2026, 10, 25, 6, 0, 0))],
  Guid: [DataType.Guid, "12345678-1234-5678-1234-567812345678"],
  ByteString: [DataType.ByteString, Buffer.from([1, 254])],
  LocalizedText: [DataType.LocalizedText, { text: "Störung", locale: "de" }],
};

function addVariable(name, dataType, getValue, extra = {}) {
  return namespace.addVariable({
    componentOf: folder,
    browseName: name,
    nodeId: `s=Interop.${name}`,
    dataType,
    minimumSamplingInterval: 50,
    value: { get: getValue },
    ...extra,
  });
}

for (const [name, [dataType, value]] of Object.entries(scalars)) {
  const variant = new Variant({ dataType, arrayType: VariantArrayType.Scalar, value });
  addVariable(name, dataType, () => variant);
}
const joints = [0.1, -1.2, 1.5, 0.0, 1.3, -0.4];
addVariable("JointPositions", DataType.Double,
  () => new Variant({ dataType: DataType.Double, arrayType: VariantArrayType.Array, value: Float64Array.from(joints) }),
  { valueRank: 1, arrayDimensions: [6] });

// changing values: a counter and a sine, pushed every 100 ms
let counter = 0;
const counterVariable = addVariable("Counter", DataType.UInt32, () => new Variant({ dataType: DataType.UInt32, value: counter }));
const sine = addVariable("Sine", DataType.Double,
  () => new Variant({ dataType: DataType.Double, value: Math.sin(counter / 10) }));
const timer = setInterval(() => {
  counter += 1;
  counterVariable.setValueFromSource(new Variant({ dataType: DataType.UInt32, value: counter }), StatusCodes.Good);
  sine.setValueFromSource(new Variant({ dataType: DataType.Double, value: Math.sin(counter / 10) }), StatusCodes.Good);
}, 100);

await server.start();
console.log(`READY ${server.getEndpointUrl()}`);

async function stop() {
  clearInterval(timer);
  await server.shutdown(0);
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
