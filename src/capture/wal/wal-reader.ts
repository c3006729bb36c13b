import { LogicalReplicationService } from 'pg-logical-replication';
import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { sqlState } from '../../sql-state.js';
import { appendChanges, type WalChange } from './append-changes.js';
import { CapturePrefilter, RULES_PREFIX } from './capture-prefilter.js';
import { CAPTURE_PUBLICATION } from './capture-slot.js';
import type { WalMessage, WalRelation } from './pgoutput-decoder.js';
import { TextPgoutputPlugin } from './text-pgoutput-plugin.js';
import { loadContextSecret, readContextMessage } from './wal-context.js';
import { openTransaction, toWalChange, type OpenTransaction } from './wal-change.js';

export interface WalReaderOptions {
  readonly databaseUrl: string;
  readonly slot: string;
  /** Where batches are appended (workflow.append_wal_changes). */
  readonly pool: pg.Pool;
  readonly logger: Logger;
  /** Changes per append; a larger transaction is appended in several. */
  readonly batchSize: number;
  /**
   * Least time between the starts of two appends that are not full (RULEBOOK_WAL_BATCH_WAIT_MS):
   * a busy stream of small transactions is appended every this many ms rather than once per
   * commit, and a quiet one at once. 0: append whenever the stream pauses. By default
   * DEFAULT_BATCH_WAIT_MS.
   */
  readonly batchWaitMs?: number;
  /** Called after each appended batch with the events it wrote (metrics, tests). */
  readonly onAppended?: (events: number, changes: number) => void;
}

/** RULEBOOK_WAL_BATCH_WAIT_MS' default. */
export const DEFAULT_BATCH_WAIT_MS = 20;

type QueueItem =
  | { readonly kind: 'data'; readonly message: WalMessage }
  | { readonly kind: 'heartbeat'; readonly lsn: string; readonly respond: boolean }
  /** The batch wait has passed: append what is pending. */
  | { readonly kind: 'flush' };

/**
 * Reads the capture slot and appends its changes to workflow.events, batch by batch, confirming
 * the slot only up to what has committed. Messages and keepalives are handled strictly in the
 * order the server sent them (pg-logical-replication's own flow control would answer keepalives
 * ahead of queued changes, and confirming a keepalive's position then could skip those changes).
 * A batch is appended when it is full, or when nothing more has arrived and the previous append
 * started at least batchWaitMs ago (else when that time has passed): an idle stream appends at
 * once, and a busy one of small transactions in one append per batchWaitMs, not one per commit.
 * Each append is a transaction with its own commit flush and a fixed cost (measured: 1 to 2 ms of
 * PostgreSQL CPU for a one-change batch), which one append per writer commit paid again and again.
 *
 * `read()` resolves when the stream ends (stop()) and rejects when it fails; the caller starts a
 * new reader, which resumes from the slot's confirmed position: whatever was appended but not yet
 * confirmed is sent again and skipped by workflow.wal_capture_progress.
 */
export class WalReader {
  readonly #options: WalReaderOptions;
  readonly #service: LogicalReplicationService;
  // A queue read from #head: Array.shift() copies the array, and one large transaction queues
  // hundreds of thousands of messages.
  #queue: QueueItem[] = [];
  #head = 0;
  #draining = false;
  #pending: WalChange[] = [];
  #transaction: OpenTransaction | undefined;
  /** Everything before this position is in #pending or appended. */
  #safeLsn: bigint = 0n;
  #confirmedLsn: bigint = 0n;
  readonly #warned = new Set<string>();
  #failure: ((error: unknown) => void) | undefined;
  #stopped = false;
  /** The daemon's signing secret (wal-context.ts); undefined: no depth message verifies. */
  #secret: string | undefined;
  #rejectedDepths = 0;
  /** performance.now() when the last append started; -Infinity before the first. */
  #lastAppendAt = Number.NEGATIVE_INFINITY;
  #waitTimer: NodeJS.Timeout | undefined;
  readonly #prefilter: CapturePrefilter;

  constructor(options: WalReaderOptions) {
    this.#options = options;
    this.#prefilter = new CapturePrefilter(options.pool);
    this.#service = new LogicalReplicationService(
      { connectionString: options.databaseUrl, application_name: 'rulebook-wal-capture' },
      // Confirmation is rulebook's alone: after the batch's commit, never on a timer.
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.#service.on('data', (_lsn: string, message: WalMessage) => {
      this.#queue.push({ kind: 'data', message });
      void this.#drain();
    });
    // Kept for the reader's whole life: an 'error' without a listener would be thrown.
    this.#service.on('error', (error: Error) => this.#failure?.(error));
    this.#service.on('heartbeat', (lsn: string, _timestamp: number, respond: boolean) => {
      this.#queue.push({ kind: 'heartbeat', lsn, respond });
      void this.#drain();
    });
  }

  /** Depth messages ignored because they were not the daemon's (forged, or unsigned). */
  get rejectedDepthMessages(): number {
    return this.#rejectedDepths;
  }

  /** Streams until stop() (resolves) or a failure (rejects). */
  async read(): Promise<void> {
    this.#secret = await loadContextSecret(this.#options.pool);
    if (this.#secret === undefined) {
      this.#options.logger.error(
        'WAL capture: this role may not read workflow.wal_context_secret, so no chain depth verifies and every captured write counts as depth 0; run the daemon as a member of rulebook_daemon',
      );
    }
    const failed = new Promise<never>((_resolve, reject) => {
      this.#failure = reject;
    });
    failed.catch(() => undefined);
    // stop() before the stream started: there is no stream for it to end.
    if (this.#stopped) return;
    const plugin = new TextPgoutputPlugin(CAPTURE_PUBLICATION);
    // '0/0': start where the slot was last confirmed.
    await Promise.race([this.#service.subscribe(plugin as never, this.#options.slot, '0/0'), failed]);
    if (!this.#stopped) throw new Error(`the replication stream of slot ${this.#options.slot} ended`);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#waitTimer);
    this.#waitTimer = undefined;
    await this.#service.stop();
  }

  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (!this.#stopped && this.#head < this.#queue.length) {
        const item = this.#queue[this.#head]!;
        this.#queue[this.#head++] = undefined as never;
        if (this.#head > 4096 && this.#head * 2 > this.#queue.length) {
          this.#queue = this.#queue.slice(this.#head);
          this.#head = 0;
        }
        if (item.kind === 'data') await this.#handle(item.message);
        else if (item.kind === 'heartbeat') await this.#heartbeat(item.lsn, item.respond);
        else await this.#flush();
      }
    } catch (error) {
      this.#failure?.(error);
    } finally {
      this.#draining = false;
    }
  }

  async #handle(message: WalMessage): Promise<void> {
    switch (message.tag) {
      case 'begin':
        this.#transaction = openTransaction(message);
        return;
      case 'relation':
        this.#checkIdentity(message.relation);
        // Sent after the table's columns changed, among other times: watched columns may be renamed.
        this.#prefilter.invalidate();
        return;
      case 'insert':
      case 'update':
      case 'delete': {
        const transaction = this.#transaction;
        if (!transaction) throw new Error(`pgoutput: a ${message.tag} outside a transaction`);
        const change = toWalChange(transaction, message);
        if (!transaction.rulesChanged && (await this.#drops(message))) return;
        if (message.tag === 'update' && message.missing.length > 0) {
          this.#warnOnce(
            `toast:${message.relation.id}`,
            { table: `${message.relation.schema}.${message.relation.table}`, columns: message.missing },
            'WAL capture: an UPDATE left TOASTed columns unchanged and the WAL holds no old row to take them from (REPLICA IDENTITY is not FULL); they are null in new_row',
          );
        }
        this.#pending.push(change);
        if (this.#pending.length >= this.#options.batchSize) await this.#flush();
        return;
      }
      case 'message': {
        const transaction = this.#transaction;
        if (message.prefix === RULES_PREFIX) {
          if (transaction && message.transactional) transaction.rulesChanged = true;
          return;
        }
        const context =
          transaction && message.transactional
            ? readContextMessage(message, transaction.xid, this.#secret)
            : undefined;
        if (!context) return;
        if ('rejected' in context) {
          // Counted and logged, and the writes keep the depth they had (0 unless the daemon signed one).
          this.#rejectedDepths += 1;
          const details = { xid: transaction!.xid, reason: context.rejected, rejected: this.#rejectedDepths };
          if (this.#rejectedDepths === 1 || this.#rejectedDepths % 1000 === 0) {
            this.#options.logger.warn(
              details,
              'WAL capture: ignored a rulebook.depth message the daemon did not sign; only the daemon sets the chain depth',
            );
          } else {
            this.#options.logger.debug(details, 'WAL capture: ignored an unsigned rulebook.depth message');
          }
          return;
        }
        Object.assign(transaction!, context);
        return;
      }
      case 'commit':
        if (this.#transaction?.rulesChanged) this.#prefilter.invalidate(this.#transaction.xid);
        this.#transaction = undefined;
        this.#safeLsn = maxLsn(this.#safeLsn, parseLsn(message.endLsn));
        if (this.#pending.length === 0) this.#confirm(this.#safeLsn);
        else if (this.#head >= this.#queue.length) await this.#flushSoon();
        return;
      default:
        return;
    }
  }

  async #heartbeat(lsn: string, respond: boolean): Promise<void> {
    // Outside a transaction, everything the server sent before this keepalive has been handled.
    if (!this.#transaction) this.#safeLsn = maxLsn(this.#safeLsn, parseLsn(lsn));
    // The server sends a keepalive whenever it has caught up with the WAL, which on a busy stream
    // is between most transactions: it does not hurry the batch wait.
    if (this.#pending.length > 0 && !this.#transaction) await this.#flushSoon();
    if (this.#pending.length === 0 && this.#safeLsn > this.#confirmedLsn) this.#confirm(this.#safeLsn);
    else if (respond) this.#confirm(this.#confirmedLsn);
  }

  /** Appends now if the last append started batchWaitMs ago, else once that time has passed. */
  async #flushSoon(): Promise<void> {
    const batchWaitMs = this.#options.batchWaitMs ?? DEFAULT_BATCH_WAIT_MS;
    const wait = this.#lastAppendAt + batchWaitMs - performance.now();
    if (wait <= 0) {
      await this.#flush();
      return;
    }
    // Queued as an item, so that the append runs in the drain loop, in order with the messages.
    this.#waitTimer ??= setTimeout(() => {
      this.#waitTimer = undefined;
      this.#queue.push({ kind: 'flush' });
      void this.#drain();
    }, Math.ceil(wait));
  }

  async #flush(): Promise<void> {
    const batch = this.#pending;
    if (batch.length === 0) return;
    clearTimeout(this.#waitTimer);
    this.#waitTimer = undefined;
    this.#lastAppendAt = performance.now();
    // A transaction still being read is confirmed only with its commit.
    const confirmable = this.#safeLsn;
    const events = await appendChanges(this.#options.pool, this.#options.slot, batch);
    this.#pending = [];
    this.#options.onAppended?.(events, batch.length);
    this.#confirm(confirmable);
  }

  #confirm(lsn: bigint): void {
    if (lsn === 0n) return;
    if (lsn > this.#confirmedLsn) this.#confirmedLsn = lsn;
    // acknowledge() reports lsn + 1 as written and flushed; the server skips a transaction whose
    // commit record starts before the confirmed position, and the next commit may start exactly
    // at this one's end, so what is passed is one less.
    void this.#service.acknowledge(formatLsn(lsn - 1n));
  }

  /** Whether the capture filters would drop this change anyway (capture-prefilter.ts). */
  async #drops(message: Extract<WalMessage, { tag: 'insert' | 'update' | 'delete' }>): Promise<boolean> {
    try {
      return await this.#prefilter.drops(message);
    } catch (error) {
      const code = sqlState(error);
      // 42501: this role may not call it; 42883: the database predates it. Then every change goes
      // to the append, as before; anything else (a lost connection) fails the reader as usual.
      if (code !== '42501' && code !== '42883') throw error;
      if (this.#prefilter.disable()) {
        this.#options.logger.warn(
          { err: error },
          'WAL capture: cannot read workflow.wal_capture_prefilter, so every change is appended and filtered there (slower for changes no rule watches); run the daemon as a member of rulebook_daemon',
        );
      }
      return false;
    }
  }

  #checkIdentity(relation: WalRelation): void {
    if (relation.replicaIdentity !== 'f') {
      this.#warnOnce(
        `identity:${relation.id}`,
        { table: `${relation.schema}.${relation.table}`, replicaIdentity: relation.replicaIdentity },
        'WAL capture: this table is not REPLICA IDENTITY FULL, so old rows are incomplete; restart the daemon in WAL mode to set it',
      );
    }
  }

  #warnOnce(key: string, details: object, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#options.logger.warn(details, message);
  }
}

export function parseLsn(lsn: string): bigint {
  const [high, low] = lsn.split('/');
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

function maxLsn(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
