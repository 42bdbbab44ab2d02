// The Khronos glTF validator on one GLB, for the twin's export tests.
// Usage: node validate_gltf.mjs FILE.glb   Prints the report's issues as JSON:
// {"numErrors", "numWarnings", "numInfos", "numHints", "messages": [{code, message, severity, pointer}]}.
import { readFile } from "node:fs/promises";
import validator from "gltf-validator";

const path = process.argv[2];
const report = await validator.validateBytes(new Uint8Array(await readFile(path)), { maxIssues: 0 });
console.log(JSON.stringify(report.issues));
