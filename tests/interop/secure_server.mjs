// A node-opcua server that offers only Basic256Sha256 SignAndEncrypt and trusts no client certificate
// it has not been told to: what a freshly commissioned PLC does with the twin's certificate.
// Its PKI (own certificate, trusted/ and rejected/ client certificates) lives in PKI_FOLDER.
// Usage: node secure_server.mjs PORT PKI_FOLDER
// Prints "READY <endpoint>" once listening; exits with status 0 on SIGTERM or SIGINT.
import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import { MessageSecurityMode, SecurityPolicy } from "node-opcua-secure-channel";
import { OPCUAServer } from "node-opcua-server";
import { DataType } from "node-opcua-variant";
import { serveUntilSignalled } from "./serve.mjs";

const [port, pkiFolder] = [Number(process.argv[2]), process.argv[3]];
const serverCertificateManager = new OPCUACertificateManager({
  rootFolder: pkiFolder,
  automaticallyAcceptUnknownCertificate: false,
});
const server = new OPCUAServer({
  port,
  hostname: "127.0.0.1",
  resourcePath: "/UA/secure",
  serverCertificateManager,
  securityModes: [MessageSecurityMode.SignAndEncrypt],
  securityPolicies: [SecurityPolicy.Basic256Sha256],
  allowAnonymous: true,
  serverInfo: { applicationUri: "urn:factory-twin:interop-secure-server" },
});
await server.initialize();
const namespace = server.engine.addressSpace.registerNamespace("urn:factory-twin:interop");
namespace.addVariable({
  organizedBy: server.engine.addressSpace.rootFolder.objects,
  browseName: "Pressure",
  nodeId: "s=Interop.Pressure",
  dataType: DataType.Double,
  minimumSamplingInterval: 50,
  value: { dataType: DataType.Double, value: 4.2 },
});
await serveUntilSignalled(server);
