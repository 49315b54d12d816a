// Times pm2's own API (its daemon's RPC socket) for list and describe, one call after the
// other, and prints {"list": [ms...], "inspect": [ms...]}. Run by bench-peers:
//   node pm2_api.js PM2_MODULE_DIR ROUNDS NAME EXPECTED_COUNT   (PM2_HOME set)
'use strict';
const pm2 = require(process.argv[2]);
const rounds = Number(process.argv[3]);
const name = process.argv[4];
const expected = Number(process.argv[5]);

function fail(msg) {
  console.error('pm2_api.js: ' + msg);
  process.exit(1);
}

function timed(call, check, done) {
  const ms = [];
  (function next() {
    if (ms.length === rounds) return done(ms);
    const t = process.hrtime.bigint();
    call((err, res) => {
      const elapsed = Number(process.hrtime.bigint() - t) / 1e6;
      if (err) fail(String(err));
      check(res);
      ms.push(elapsed);
      next();
    });
  })();
}

pm2.connect((err) => {
  if (err) fail('connect: ' + err);
  timed((cb) => pm2.list(cb), (res) => {
    if (res.length !== expected) fail(`list gave ${res.length}, not ${expected}`);
  }, (list) => {
    timed((cb) => pm2.describe(name, cb), (res) => {
      if (res.length !== 1 || res[0].name !== name) fail('describe gave no ' + name);
    }, (inspect) => {
      process.stdout.write(JSON.stringify({ list, inspect }) + '\n');
      pm2.disconnect();
    });
  });
});
