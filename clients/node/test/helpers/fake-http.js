// A local HTTP server on 127.0.0.1 that records each request and lets the test answer it:
// the stand-in for a strongroom server in the unit tests, and for an OpenAI-compatible
// endpoint in the task tests.

import { createServer } from "node:http";

/**
 * Start a server; `handler(request, response, index)` answers each request, where
 * `request` is `{ method, url, headers, text, body, at }` (`body` parsed from JSON when it
 * is JSON). Returns `{ baseURL, requests, close() }`.
 */
export async function fakeServer(handler) {
  const requests = [];
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) {
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString("utf8");
    let body;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    const request = { method: req.method, url: req.url, headers: req.headers, text, body, at: Date.now() };
    requests.push(request);
    try {
      await handler(request, res, requests.length - 1);
    } catch (error) {
      if (!res.headersSent) {
        sendJson(res, 599, { error: { code: "test_handler_failed", message: String(error) } });
      }
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    baseURL: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}

/** Answer with JSON. */
export function sendJson(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(text);
}

/** The contract's error envelope. */
export function sendError(res, status, code, message = code, extra = {}, headers = {}) {
  sendJson(
    res,
    status,
    { error: { code, message, request_id: `req_${status}`, details: [], ...extra } },
    headers,
  );
}
