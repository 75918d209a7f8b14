// A real OAuth 2.1 / OpenID authority for tests/auth.rs: oidc-provider
// (OpenID Certified), on 127.0.0.1 and an ephemeral port. Prints
// "READY <port>" once it listens. Client credentials only:
//   - with `resource=urn:gateway`: an RS256 JWT access token (typ at+jwt),
//   - without a resource: an opaque token, checked by introspection.
// With TLS_CERT and TLS_KEY (PEM file paths) it serves HTTPS: discovery,
// JWKS, token and introspection endpoints all over TLS.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import Provider from 'oidc-provider';

const RESOURCE = 'urn:gateway';
const tls = process.env.TLS_CERT && process.env.TLS_KEY;
const server = tls
  ? https.createServer({ cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY) })
  : http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'svc',
        client_secret: 'svc-secret-0123456789abcdef',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: 'api:read api:write',
      },
    ],
    scopes: ['api:read', 'api:write'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (resourceIndicator !== RESOURCE) throw new Error('unknown resource');
          return {
            scope: 'api:read api:write',
            audience: RESOURCE,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  server.on('request', provider.callback());
  process.stdout.write(`READY ${port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
