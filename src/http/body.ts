import type http from 'node:http';
import { HttpError } from './respond.js';

/** Requests are small JSON documents: 64 KiB is far more than notes of 2,000 characters need. */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * The request's JSON body, or undefined when it has none. 413 past `limit` bytes, 415 for a
 * content type other than JSON, 400 for text that is not JSON.
 */
export async function readJsonBody(request: http.IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const tooLarge = () =>
    new HttpError(413, `the request body is larger than ${limit / 1024} KiB`, { connection: 'close' });
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    // Drain what was refused without keeping it; the connection is closed after the answer.
    request.resume();
    throw tooLarge();
  }
  const { size, text } = await new Promise<{ size: number; text: string }>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      // Stop keeping what arrives but drain it, so the client can read the answer; the
      // connection is closed after it.
      request.off('data', onData);
      request.resume();
      reject(tooLarge());
    };
    request.on('data', onData);
    request.once('end', () => resolve({ size, text: Buffer.concat(chunks).toString('utf8') }));
    request.once('error', reject);
  });
  if (size === 0) return undefined;
  const type = request.headers['content-type'];
  if (type !== undefined && !/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) {
    throw new HttpError(415, `send the body as application/json, not ${type}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new HttpError(400, `the request body is not valid JSON: ${(error as Error).message}`);
  }
}
