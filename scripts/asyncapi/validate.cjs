// Validates an AsyncAPI document with the official parser (@asyncapi/parser): the
// document against the specification's JSON Schema, every payload and header schema,
// the references between operations, channels and messages, and the parser's own
// rule set. Usage: node validate.cjs <directory holding node_modules> <document>
// Prints every diagnostic; exits 1 when there is any error or warning, 2 on bad usage.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { createRequire } = require("node:module");

async function main([installDir, documentPath]) {
  if (!installDir || !documentPath) {
    console.error("usage: node validate.cjs <validator directory> <asyncapi document>");
    return 2;
  }
  // The parser lives in a cache outside the repository, not beside this file.
  const requireInstalled = createRequire(path.join(path.resolve(installDir), "package.json"));
  const { Parser, DiagnosticSeverity } = requireInstalled("@asyncapi/parser");
  const text = fs.readFileSync(documentPath, "utf8");
  const { document, diagnostics } = await new Parser().parse(text, { source: documentPath });
  let problems = 0;
  for (const diagnostic of diagnostics) {
    const severity = DiagnosticSeverity[diagnostic.severity];
    if (diagnostic.severity <= DiagnosticSeverity.Warning) problems += 1;
    console.log(`${severity} ${diagnostic.code} at ${diagnostic.path.join(".") || "(root)"}: ${diagnostic.message}`);
  }
  if (document === undefined || problems > 0) {
    console.log(`${documentPath}: not valid (${problems} errors or warnings)`);
    return 1;
  }
  console.log(`${documentPath}: valid AsyncAPI ${document.version()}`);
  return 0;
}

main(process.argv.slice(2)).then(
  (status) => process.exit(status),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
