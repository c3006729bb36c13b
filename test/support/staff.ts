import { createToken } from '../../src/admin/tokens.js';
import { addRole, addUser } from '../../src/admin/users.js';
import { HttpServer, type HttpServerOptions } from '../../src/http/server.js';
import { createLogger } from '../../src/logger.js';
import type { TestDatabase } from './database.js';

export interface StaffUser {
  readonly id: string;
  readonly email: string;
  readonly token: string;
  readonly tokenId: string;
}

/** A person with the given roles (created when missing) and a fresh token. */
export async function createStaffUser(
  db: TestDatabase,
  email: string,
  options: { roles?: string[]; name?: string } = {},
): Promise<StaffUser> {
  for (const role of options.roles ?? []) {
    const [exists] = await db.query('select 1 from core.roles where name = $1', [role]);
    if (!exists) await addRole(db.pool, role);
  }
  const user = await addUser(db.pool, {
    email,
    name: options.name ?? email.split('@')[0]!,
    roles: options.roles,
  });
  const token = await createToken(db.pool, { email, name: 'test', expiresInMs: 3_600_000 });
  return { id: user.id, email, token: token.token, tokenId: token.id };
}

export async function roleId(db: TestDatabase, name: string): Promise<string> {
  const [row] = await db.query<{ id: string }>('select id from core.roles where name = $1', [name]);
  return row!.id;
}

/** An HttpServer on a free port of 127.0.0.1, against the test database. */
export async function startHttp(
  db: TestDatabase,
  options: Partial<Pick<HttpServerOptions, 'engine' | 'staffApi'>> = {},
): Promise<{ server: HttpServer; base: string }> {
  const server = new HttpServer({
    port: 0,
    host: '127.0.0.1',
    pool: db.pool,
    engine: options.engine,
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'),
    staffApi: options.staffApi,
  });
  await server.start();
  return { server, base: `http://127.0.0.1:${server.port}` };
}

export interface SseEvent {
  readonly event: string;
  readonly data: string;
}

export interface SseStream {
  readonly status: number;
  readonly events: SseEvent[];
  /** Resolves with the first event (already received or to come) that `match` accepts. */
  next(match: (event: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>;
  close(): void;
}

/** Opens a server-sent event stream with fetch and parses its events as they arrive. */
export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  const controller = new AbortController();
  const response = await fetch(url, {
    headers: { accept: 'text/event-stream', ...headers },
    signal: controller.signal,
  });
  const events: SseEvent[] = [];
  const listeners = new Set<() => void>();
  let buffer = '';
  const ended = (async () => {
    if (!response.body) return;
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length > 0) events.push({ event, data: data.join('\n') });
        }
        for (const listener of listeners) listener();
      }
    } catch {
      // aborted
    }
    for (const listener of listeners) listener();
  })();
  let done = false;
  void ended.then(() => (done = true));
  return {
    status: response.status,
    events,
    ended,
    close: () => controller.abort(),
    next(match, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = events.find(match);
          if (found) {
            cleanup();
            resolve(found);
          } else if (done) {
            cleanup();
            reject(new Error(`the stream ended without the event; got ${JSON.stringify(events)}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no matching event within ${timeoutMs} ms; got ${JSON.stringify(events)}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
  };
}
