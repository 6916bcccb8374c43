#!/usr/bin/env node
// solc-js behind native solc's command line, for py-solc-x (solc_binary=) and forge (solc = "...").
// Answers `--version` and `--standard-json` (input on stdin, output on stdout). Imports resolve
// against --base-path, every --include-path and the repo's node_modules; --allow-paths is honoured.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require(path.join(__dirname, '..', 'node_modules', 'solc'));

const args = process.argv.slice(2);
if (args.includes('--version')) {
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
  process.exit(0);
}
const roots = [process.cwd()];
const allowed = [];
for (let i = 0; i < args.length; i++) {
  const next = () => args[++i];
  if (args[i] === '--base-path') roots.unshift(path.resolve(next()));
  else if (args[i] === '--include-path') roots.push(path.resolve(next()));
  else if (args[i] === '--allow-paths') allowed.push(...next().split(',').map((p) => path.resolve(p)));
}
roots.push(path.join(__dirname, '..', 'node_modules'));
const isAllowed = (file) => allowed.length === 0 || roots.concat(allowed).some((dir) => file.startsWith(dir));
function findImport(name) {
  for (const root of roots) {
    const file = path.isAbsolute(name) ? name : path.join(root, name);
    if (fs.existsSync(file) && isAllowed(file)) return { contents: fs.readFileSync(file, 'utf8') };
  }
  return { error: `File not found: ${name} (searched ${roots.join(', ')})` };
}
if (!args.includes('--standard-json')) {
  process.stderr.write('solc-shim: only --version and --standard-json are supported\n');
  process.exit(2);
}
const input = fs.readFileSync(0, 'utf8');
process.stdout.write(solc.compile(input, { import: findImport }));
