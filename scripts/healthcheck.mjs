// The container's health check (Dockerfile HEALTHCHECK): GET /ready on this container's port,
// exit 0 on 200 and 1 otherwise. With TLS_CERT_FILE the server speaks HTTPS; its certificate
// is not checked here, as the server asked is this container's own.
import http from 'node:http';
import https from 'node:https';

const tls = Boolean(process.env.TLS_CERT_FILE);
const req = (tls ? https : http).get(
  { host: '127.0.0.1', port: Number(process.env.PORT || 8000), path: '/ready', rejectUnauthorized: false, timeout: 4000 },
  (res) => {
    res.resume();
    process.exit(res.statusCode === 200 ? 0 : 1);
  },
);
req.on('timeout', () => req.destroy(new Error('timed out')));
req.on('error', (err) => {
  console.error(`/ready: ${err.message}`);
  process.exit(1);
});
