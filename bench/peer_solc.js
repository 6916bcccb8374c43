#!/usr/bin/env node
// Compiles a standard-JSON input (stdin) with one solc-js package, for bench/peers.py.
// Usage: node peer_solc.js <solc package dir> <import root>...
// Imports resolve against each root in turn (after the input's remappings).
'use strict';
const fs = require('fs');
const path = require('path');

const [solcDir, ...roots] = process.argv.slice(2);
const solc = require(path.resolve(solcDir));
function findImport(name) {
  for (const root of roots) {
    const file = path.join(root, name);
    if (fs.existsSync(file)) return { contents: fs.readFileSync(file, 'utf8') };
  }
  return { error: `File not found: ${name}` };
}
process.stdout.write(solc.compile(fs.readFileSync(0, 'utf8'), { import: findImport }));
