// Validates glTF/GLB files with Khronos' validator and prints one JSON report for all of them:
// {file: {numErrors, numWarnings, errors: [...]}}. The validator itself never fails on an
// invalid asset (it resolves with a report), so the caller reads numErrors.
import { readFile } from "node:fs/promises";
import validator from "gltf-validator";

const reports = {};
for (const file of process.argv.slice(2)) {
  const report = await validator.validateBytes(new Uint8Array(await readFile(file)), {
    uri: file,
    maxIssues: 50,
  });
  reports[file] = {
    numErrors: report.issues.numErrors,
    numWarnings: report.issues.numWarnings,
    errors: report.issues.messages.filter((m) => m.severity === 0),
    warnings: report.issues.messages.filter((m) => m.severity === 1),
  };
}
process.stdout.write(JSON.stringify(reports));
