// Uploads one file to a tus endpoint with tus-js-client in Node.js and prints one JSON line:
// {outcome: "success" | "aborted" | "error", url, error, progress, resumedFrom,
//  previousUploads, requests: [{method, from, status, offset}]} (`from`: the request's
// Upload-Offset, `offset`: the response's). The tests in tests/integration
// run it; the bearer token comes from the environment (TUS_TOKEN), never the command line.
//
//   node tus-upload.cjs --client DIR --endpoint URL --file PATH [--filename NAME]
//        [--url-storage FILE] [--resume] [--abort-at FRACTION] [--parallel N]
//        [--chunk-size BYTES]
//
// --client is the directory holding node_modules/tus-js-client (scripts/tus-js-client dir).
// --url-storage keeps upload URLs in a file (tus-js-client's FileUrlStorage), so that
// --resume in a later process finds the upload with findPreviousUploads() and carries on
// with resumeFromPreviousUpload(). --abort-at calls abort() from onProgress once that share
// of the file was sent, as a user closing the program would.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { createRequire } = require("node:module");
const { parseArgs } = require("node:util");

const { values: args } = parseArgs({
  options: {
    client: { type: "string" },
    endpoint: { type: "string" },
    file: { type: "string" },
    filename: { type: "string" },
    "url-storage": { type: "string" },
    resume: { type: "boolean", default: false },
    "abort-at": { type: "string" },
    parallel: { type: "string" },
    "chunk-size": { type: "string" },
  },
});
for (const required of ["client", "endpoint", "file"]) {
  if (!args[required]) {
    console.error(`--${required} is required`);
    process.exit(2);
  }
}

// The client lives in a cache outside the repository, not beside this file.
const tus = createRequire(path.join(path.resolve(args.client), "package.json"))("tus-js-client");
const abortAt = args["abort-at"] === undefined ? null : Number(args["abort-at"]);
const report = {
  outcome: null,
  url: null,
  error: null,
  progress: 0,
  resumedFrom: null,
  previousUploads: 0,
  requests: [],
};
let aborting = false;

function finish(outcome) {
  report.outcome = outcome;
  report.url = upload.url;
  process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
}

const options = {
  endpoint: args.endpoint,
  metadata: { filename: args.filename || path.basename(args.file) },
  headers: { Authorization: `Bearer ${process.env.TUS_TOKEN || ""}` },
  onAfterResponse(req, res) {
    report.requests.push({
      method: req.getMethod(),
      from: req.getHeader("Upload-Offset") ?? null,
      status: res.getStatus(),
      offset: res.getHeader("Upload-Offset") ?? null,
    });
  },
  onProgress(sent, total) {
    report.progress = sent;
    if (abortAt !== null && !aborting && sent >= abortAt * total) {
      aborting = true;
      upload.abort().then(
        () => finish("aborted"),
        (error) => {
          report.error = String(error);
          finish("error");
        },
      );
    }
  },
  onSuccess() {
    finish("success");
  },
  onError(error) {
    report.error = String(error);
    finish("error");
  },
};
// Only options that were given: an undefined one would replace tus-js-client's default.
if (args["url-storage"]) options.urlStorage = new tus.FileUrlStorage(args["url-storage"]);
if (args.parallel) options.parallelUploads = Number(args.parallel);
if (args["chunk-size"]) options.chunkSize = Number(args["chunk-size"]);

const upload = new tus.Upload(fs.createReadStream(args.file), options);

async function main() {
  if (args.resume) {
    const previous = await upload.findPreviousUploads();
    report.previousUploads = previous.length;
    if (previous.length > 0) {
      report.resumedFrom = previous[0].uploadUrl;
      upload.resumeFromPreviousUpload(previous[0]);
    }
  }
  upload.start();
}

main().catch((error) => {
  report.error = String(error);
  finish("error");
});
