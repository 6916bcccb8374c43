#!/usr/bin/env node
// Builds the dapp: bundles src/main.ts (TypeScript + viem, the ABI from abi/JobEscrow.ts) with
// esbuild and copies public/ beside it. Nothing is fetched at run time from anywhere but the
// chain's RPC, the wallet and the bridge's API (no CDN, no remote font).
//
//   node dapp/build.mjs                                  # dapp/dist/, served by `ce-bridge run` at /app/
//   node dapp/build.mjs --out site --config config.json  # a static site for any host
//
// --config copies a config.json ({chainId, rpcUrl, contract, apiUrl, fromBlock?, explorerUrl?})
// into the output; without it the page asks its own origin for ./config.json (the bridge serves one).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const args = { out: join(here, "dist"), config: null };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if ((flag === "--out" || flag === "--config") && value) {
      args[flag.slice(2)] = resolve(value);
      i++;
    } else {
      console.error(`usage: node dapp/build.mjs [--out DIR] [--config config.json] (unknown: ${flag})`);
      process.exit(2);
    }
  }
  return args;
}

function checkConfig(path) {
  let config;
  try {
    config = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    console.error(`build: --config ${path}: ${error.message}`);
    process.exit(2);
  }
  for (const key of ["chainId", "contract", "apiUrl"]) {
    if (config[key] === undefined || config[key] === null) {
      console.error(`build: --config ${path}: "${key}" is required`);
      process.exit(2);
    }
  }
  return config;
}

const args = parseArgs(process.argv.slice(2));
const config = args.config ? checkConfig(args.config) : null;
rmSync(args.out, { recursive: true, force: true });
mkdirSync(args.out, { recursive: true });

await build({
  entryPoints: [join(here, "src", "main.ts")],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  platform: "browser",
  outfile: join(args.out, "app.js"),
  legalComments: "none",
  logLevel: "warning",
});
for (const name of readdirSync(join(here, "public"))) {
  copyFileSync(join(here, "public", name), join(args.out, name));
}
if (config) {
  writeFileSync(join(args.out, "config.json"), JSON.stringify(config, null, 2) + "\n");
}

let raw = 0;
let gzipped = 0;
for (const name of readdirSync(args.out)) {
  const bytes = readFileSync(join(args.out, name));
  raw += bytes.length;
  gzipped += gzipSync(bytes, { level: 9 }).length;
}
const kb = (n) => (n / 1024).toFixed(1) + " KB";
console.log(`dapp built in ${args.out}: ${kb(raw)}, ${kb(gzipped)} gzipped (aim: under 250 KB gzipped)`);
