// Why the native module does not load, when the reason is the system's
// libnbd: it names the package to install, in one line. Shipped in the
// package: `npm install` runs it (node-gyp-build's step before compiling,
// which cannot help when libnbd itself is missing) and lib/binding.ts words
// its load errors with it.
'use strict';
const path = require('path');

/** One line saying what to install, or undefined when the error is not about libnbd. */
function explainLoadError(error) {
  const message = String((error && error.message) || error);
  if (/libnbd\.so\.0: cannot open shared object file/.test(message)) {
    return 'libnbd: the libnbd library (libnbd.so.0) is not installed: install libnbd0 (Debian, Ubuntu) or libnbd (Fedora, RHEL)';
  }
  const node = /version `LIBNBD_([\d.]+)' not found/.exec(message);
  if (node) return `libnbd: the libnbd installed is older than this binding needs (no LIBNBD_${node[1]}): install libnbd 1.14 or later`;
  return undefined;
}

module.exports = { explainLoadError };

// As node-gyp-build's step before compiling (no build or prebuilt binary
// loaded): stop with the line when the reason is libnbd, else let it compile.
if (require.main === module) {
  try {
    require('node-gyp-build')(path.join(__dirname, '..'));
  } catch (error) {
    const line = explainLoadError(error);
    if (line !== undefined) {
      console.error(line);
      process.exit(1);
    }
  }
}
