// An OPC-UA server built on node-opcua, an independent stack, for the twin's interoperability tests.
// Under Objects/Interop, in the namespace urn:factory-twin:interop, with string NodeIds "Interop.<Name>":
// one variable of each built-in scalar type that makes sense as a value, a Double array of 6
// (JointPositions), and a UInt32 counter, a Double sine and an analog Level (EURange 0..100, which a
// percent deadband needs) that change every 100 ms.
// Usage: node server.mjs [PORT]   (or PORT in the environment; default 48400)
// Prints "READY <endpoint>" once listening; exits with status 0 on SIGTERM or SIGINT.
import { OPCUAServer } from "node-opcua-server";
import { StatusCodes } from "node-opcua-status-code";
import { DataType, Variant, VariantArrayType } from "node-opcua-variant";
import { serveUntilSignalled } from "./serve.mjs";

const port = Number(process.argv[2] || process.env.PORT || 48400);
const server = new OPCUAServer({
  port,
  hostname: "127.0.0.1",
  resourcePath: "/UA/interop",
  buildInfo: { productName: "factory-twin-interop", buildNumber: "1" },
  serverInfo: { applicationUri: "urn:factory-twin:interop-server" },
});
await server.initialize();

const addressSpace = server.engine.addressSpace;
const namespace = addressSpace.registerNamespace("urn:factory-twin:interop");
const folder = namespace.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "Interop" });

function addVariable(name, dataType, value, extra = {}) {
  return namespace.addVariable({
    componentOf: folder,
    browseName: name,
    nodeId: `s=Interop.${name}`,
    dataType,
    minimumSamplingInterval: 50, // node-opcua refuses to sample variables without one
    value: new Variant({ dataType, arrayType: VariantArrayType.Scalar, value, ...extra.variant }),
    ...extra.variable,
  });
}

// name: [type, value]; the test (tests/test_interop_node_opcua.py) expects these values
const scalars = {
  Boolean: [DataType.Boolean, true],
  SByte: [DataType.SByte, -100],
  Byte: [DataType.Byte, 200],
  Int16: [DataType.Int16, -30000],
  UInt16: [DataType.UInt16, 60000],
  Int32: [DataType.Int32, -2000000000],
  UInt32: [DataType.UInt32, 4000000000],
  Int64: [DataType.Int64, [0xffffffff, 0xfffffc18]], // 64-bit values are [high, low] uint32 words: -1000
  UInt64: [DataType.UInt64, [0x001fffff, 0xffffffff]], // 2**53 - 1, the largest a float64 holds exactly
  Float: [DataType.Float, 1.5],
  Double: [DataType.Double, -0.00225],
  String: [DataType.String, "Schicht 2 läuft"],
  DateTime: [DataType.DateTime, new Date(Date.UTC(2026, 10, 25, 6, 0, 0, 250))],
  Guid: [DataType.Guid, "12345678-1234-5678-1234-567812345678"],
  ByteString: [DataType.ByteString, Buffer.from([1, 254])],
  XmlElement: [DataType.XmlElement, "<tool id=\"7\"/>"],
  LocalizedText: [DataType.LocalizedText, { text: "Störung", locale: "de" }],
  QualifiedName: [DataType.QualifiedName, { namespaceIndex: 1, name: "Tool" }],
  StatusCode: [DataType.StatusCode, StatusCodes.BadDeviceFailure],
};
const variables = {};
for (const [name, [dataType, value]] of Object.entries(scalars)) {
  variables[name] = addVariable(name, dataType, value);
}
addVariable("NodeId", DataType.NodeId, variables.Double.nodeId); // a reference to another node
addVariable("JointPositions", DataType.Double, Float64Array.from([0.1, -1.2, 1.5, 0.0, 1.3, -0.4]), {
  variant: { arrayType: VariantArrayType.Array },
  variable: { valueRank: 1, arrayDimensions: [6] },
});

// changing values, pushed every 100 ms
let tick = 0;
const counter = addVariable("Counter", DataType.UInt32, tick);
const sine = addVariable("Sine", DataType.Double, 0.0);
const level = namespace.addAnalogDataItem({
  componentOf: folder,
  browseName: "Level",
  nodeId: "s=Interop.Level",
  dataType: "Double",
  engineeringUnitsRange: { low: 0, high: 100 },
  minimumSamplingInterval: 50,
  value: new Variant({ dataType: DataType.Double, value: 50.0 }),
});
const timer = setInterval(() => {
  tick += 1;
  counter.setValueFromSource({ dataType: DataType.UInt32, value: tick }, StatusCodes.Good);
  sine.setValueFromSource({ dataType: DataType.Double, value: Math.sin(tick / 10) }, StatusCodes.Good);
  level.setValueFromSource({ dataType: DataType.Double, value: 50 + 40 * Math.sin(tick / 10) }, StatusCodes.Good);
}, 100);

await serveUntilSignalled(server, () => clearInterval(timer));
