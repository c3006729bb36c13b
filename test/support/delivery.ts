import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { SMTPServer, type SMTPServerAddress } from 'smtp-server';
import { DeliveryWorker, type DeliveryWorkerOptions } from '../../src/delivery/delivery-worker.js';
import type { Engine } from '../../src/engine/engine.js';
import { createLogger } from '../../src/logger.js';
import type { TestDatabase } from './database.js';
import { waitFor } from './wait.js';

/** A test-only audit of every state a delivery row goes through, written by a trigger. */
export const DELIVERY_HISTORY = `
create table if not exists public.delivery_history (
  seq bigserial primary key,
  delivery_id uuid not null,
  status text not null,
  attempts int,
  error_message text,
  provider_response jsonb
);
create or replace function public.log_delivery() returns trigger language plpgsql as $$
begin
  insert into public.delivery_history (delivery_id, status, attempts, error_message, provider_response)
  values (new.id, new.status, new.attempts, new.error_message, new.provider_response);
  return null;
end
$$;
create or replace trigger log_delivery after insert or update on workflow.notification_deliveries
  for each row execute function public.log_delivery()`;

export interface HistoryEntry {
  status: string;
  attempts: number;
  error_message: string | null;
  provider_response: Record<string, unknown> | null;
}

export async function historyOf(db: TestDatabase, deliveryId: string): Promise<HistoryEntry[]> {
  return db.query<HistoryEntry>(
    `select status, attempts, error_message, provider_response from public.delivery_history
      where delivery_id = $1 order by seq`,
    [deliveryId],
  );
}

export interface DeliveryRow {
  id: string;
  notification_id: string;
  automation_execution_id: string | null;
  rule_id: string | null;
  action_id: string | null;
  recipient_id: string;
  channel: string;
  status: string;
  attempts: number;
  sent_at: Date | null;
  delivered_at: Date | null;
  failed_at: Date | null;
  error_message: string | null;
  provider_response: Record<string, unknown> | null;
}

export async function deliveriesOf(db: TestDatabase, ruleId: string): Promise<DeliveryRow[]> {
  return db.query<DeliveryRow>(
    `select * from workflow.notification_deliveries where rule_id = $1 order by channel, recipient_id`,
    [ruleId],
  );
}

/** Waits until every delivery of the rule has left pending and retrying, and returns them. */
export function settled(rows: DeliveryRow[], count: number): DeliveryRow[] | undefined {
  return rows.length === count && rows.every((row) => !['pending', 'retrying'].includes(row.status))
    ? rows
    : undefined;
}

/**
 * Waits until a running engine has loaded the current rules, so that a change written next is
 * matched against every rule the test just created (not a cache loaded half-way through them).
 */
export async function rulesLoaded(db: TestDatabase, engine: Engine): Promise<void> {
  const [current] = await db.query<{ version: string }>(
    'select version::text from workflow.rule_set_version',
  );
  await waitFor('the engine to load the rules', () => engine.rules?.version === current!.version);
}

export function startWorker(db: TestDatabase, options: Partial<DeliveryWorkerOptions> = {}): DeliveryWorker {
  return new DeliveryWorker({
    databaseUrl: db.url,
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'),
    pollIntervalMs: 100,
    retryBaseMs: 25,
    ...options,
  });
}

/** A reply an SMTP hook gives instead of accepting. */
export interface SmtpReply {
  readonly code: number;
  readonly message: string;
}

export interface ReceivedMail {
  readonly envelopeTo: string[];
  readonly envelopeFrom: string | undefined;
  readonly raw: string;
  readonly parsed: ParsedMail;
  /** What the server answered: accepted, or the reply it refused with. */
  readonly refused?: SmtpReply;
}

export interface TestSmtpServer {
  readonly url: string;
  /** Every message that reached the end of DATA, accepted or not. */
  readonly messages: ReceivedMail[];
  /** Refuses a recipient at RCPT TO when it returns a reply. */
  onRecipient: (address: string) => SmtpReply | undefined;
  /** Refuses a message at the end of DATA when it returns a reply. */
  onMessage: (mail: Omit<ReceivedMail, 'refused'>) => SmtpReply | undefined;
  close(): Promise<void>;
}

function smtpError(reply: SmtpReply): Error {
  return Object.assign(new Error(reply.message), { responseCode: reply.code });
}

/** A real SMTP server on 127.0.0.1 that keeps what it receives. */
export async function startSmtpServer(): Promise<TestSmtpServer> {
  const state: TestSmtpServer = {
    url: '',
    messages: [],
    onRecipient: () => undefined,
    onMessage: () => undefined,
    close: async () => {},
  };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onRcptTo(address: SMTPServerAddress, _session, callback) {
      const reply = state.onRecipient(address.address);
      callback(reply ? smtpError(reply) : null);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        void simpleParser(raw).then((parsed) => {
          const mail = {
            envelopeTo: session.envelope.rcptTo.map((rcpt) => rcpt.address),
            envelopeFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : undefined,
            raw,
            parsed,
          };
          const reply = state.onMessage(mail);
          state.messages.push(reply ? { ...mail, refused: reply } : mail);
          callback(reply ? smtpError(reply) : null);
        }, callback);
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return Object.assign(state, {
    url: `smtp://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

/** The addresses of a parsed To/Cc/Reply-To header. */
export function addresses(field: AddressObject | AddressObject[] | undefined): string[] {
  const objects = field === undefined ? [] : Array.isArray(field) ? field : [field];
  return objects.flatMap((object) => object.value.map((entry) => entry.address ?? ''));
}

export interface ReceivedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  /** Date.now() when the request arrived. */
  readonly at: number;
}

export interface Answer {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  /** Answers only after this long (the client may give up first). */
  readonly delayMs?: number;
}

export interface TestReceiver {
  readonly url: string;
  readonly requests: ReceivedRequest[];
  /** Answers a request; `index` counts the requests to the same path, from 0. */
  answer: (request: ReceivedRequest, index: number) => Answer;
  requestsTo(path: string): ReceivedRequest[];
  close(): Promise<void>;
}

/** A real HTTP server on 127.0.0.1 that records requests and answers as told. */
export async function startReceiver(): Promise<TestReceiver> {
  const requests: ReceivedRequest[] = [];
  const state: TestReceiver = {
    url: '',
    requests,
    answer: () => ({ status: 200, body: 'ok' }),
    requestsTo: (path) => requests.filter((request) => request.path === path),
    close: async () => {},
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request: ReceivedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
      };
      const index = state.requestsTo(request.path).length;
      requests.push(request);
      const answer = state.answer(request, index);
      const send = () => {
        if (res.destroyed) return;
        res.writeHead(answer.status, answer.headers ?? {});
        res.end(answer.body ?? '');
      };
      if (answer.delayMs) {
        const timer = setTimeout(send, answer.delayMs);
        res.on('close', () => clearTimeout(timer));
      } else {
        send();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

/**
 * Verifies X-Rulebook-Signature exactly as the comment atop src/delivery/webhook-sender.ts tells
 * receivers to: HMAC-SHA256 over "<t>.<raw body>", hex, compared in constant time, t within 5 minutes.
 */
export function verifySignature(header: string | undefined, rawBody: string, secret: string): boolean {
  if (!header) return false;
  const parts = new Map(
    header.split(',').map((part) => {
      const index = part.indexOf('=');
      return [part.slice(0, index).trim(), part.slice(index + 1).trim()] as const;
    }),
  );
  const t = parts.get('t');
  const v1 = parts.get('v1');
  if (!t || !v1 || !/^\d+$/.test(t)) return false;
  if (Math.abs(Date.now() / 1000 - Number(t)) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${rawBody}`).digest();
  const given = Buffer.from(v1, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
