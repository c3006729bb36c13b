import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';

export interface HttpPostRequest {
  readonly url: URL;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** Aborts the request, the wait for the answer and the reading of its body. */
  readonly signal: AbortSignal;
  /** How the host name becomes addresses; the destination guard pins it to checked ones. */
  readonly lookup?: LookupFunction | undefined;
  /** How much of the answer's body to keep; the rest is not read. */
  readonly maxBodyBytes: number;
}

export interface HttpAnswer {
  readonly status: number;
  readonly statusText: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  readonly truncated: boolean;
  /** Why the body could not be read to the end (the status still counts). */
  readonly bodyError?: string;
}

/**
 * One POST over node:http(s), never following redirects, on a connection of its own (no keep-alive
 * pool: a pooled socket could reach a host that the caller's lookup never checked). Rejects when no
 * answer arrives (connection errors keep their code, e.g. ECONNREFUSED).
 */
export function httpPost(request: HttpPostRequest): Promise<HttpAnswer> {
  const transport = request.url.protocol === 'https:' ? https : http;
  return new Promise<HttpAnswer>((resolve, reject) => {
    const outgoing = transport.request(
      request.url,
      {
        method: 'POST',
        headers: { ...request.headers, 'content-length': String(Buffer.byteLength(request.body)) },
        agent: false,
        signal: request.signal,
        ...(request.lookup ? { lookup: request.lookup } : {}),
      },
      (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        let settled = false;
        const finish = (truncated: boolean, bodyError?: string) => {
          if (settled) return;
          settled = true;
          resolve({
            status: response.statusCode ?? 0,
            statusText: response.statusMessage ?? '',
            headers: response.headers,
            body: Buffer.concat(chunks).subarray(0, request.maxBodyBytes).toString('utf8'),
            truncated,
            ...(bodyError !== undefined ? { bodyError } : {}),
          });
        };
        response.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          size += chunk.byteLength;
          if (size > request.maxBodyBytes) {
            finish(true);
            response.destroy();
          }
        });
        response.on('end', () => finish(false));
        response.on('error', (error) => finish(false, error.message));
        response.on('close', () => {
          if (!response.complete) finish(false, 'the connection closed before the answer ended');
        });
      },
    );
    outgoing.on('error', reject);
    outgoing.end(request.body);
  });
}
