import pg from 'pg';
import type { Logger } from '../../logger.js';
import { createPool } from '../../db/pool.js';
import { describeError } from '../../describe-error.js';
import { enterWalMode } from './capture-mode.js';
import { checkSlotName, defaultSlotName, TRY_READER_LOCK } from './capture-slot.js';
import { WalReader } from './wal-reader.js';
import { checkWalRequirements } from './wal-requirements.js';

export interface WalCaptureOptions {
  readonly databaseUrl: string;
  readonly logger: Logger;
  /** RULEBOOK_WAL_SLOT; by default rulebook_<database>. */
  readonly slot?: string;
  /** Changes per append (RULEBOOK_WAL_BATCH_SIZE). */
  readonly batchSize: number;
  /** Least time between two appends that are not full (RULEBOOK_WAL_BATCH_WAIT_MS; wal-reader.ts). */
  readonly batchWaitMs?: number;
  /** How often a daemon that is not the reader tries to become it, and a failed reader restarts. */
  readonly retryMs: number;
  readonly onAppended?: (events: number, changes: number) => void;
}

/**
 * RULEBOOK_CAPTURE=wal in one daemon. start() checks the server, switches the database to WAL mode
 * and returns; then every daemon tries for the reader lock, the one that holds it reads the slot,
 * and the others try again every retryMs, so that one takes over when the reader's session ends (a
 * crash, a SIGKILL, a lost connection). A failed stream (PostgreSQL restarting, say) is started again
 * after retryMs, from the slot's confirmed position.
 */
export class WalCapture {
  readonly #options: WalCaptureOptions;
  readonly #pool: pg.Pool;
  #slot = '';
  #lockClient: pg.Client | undefined;
  #reader: WalReader | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  #wake: (() => void) | undefined;
  #isReader = false;
  #appendedEvents = 0;

  constructor(options: WalCaptureOptions) {
    this.#options = options;
    this.#pool = createPool({
      databaseUrl: options.databaseUrl,
      max: 2,
      applicationName: 'rulebook-wal-append',
      logger: options.logger,
    });
  }

  get slot(): string {
    return this.#slot;
  }

  /** Whether this daemon holds the reader lock and reads the slot now. */
  get isReader(): boolean {
    return this.#isReader;
  }

  get appendedEvents(): number {
    return this.#appendedEvents;
  }

  async start(): Promise<void> {
    let client;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      await this.#pool.end();
      throw error;
    }
    try {
      await checkWalRequirements(client);
      const { rows } = await client.query<{ db: string }>('select current_database() as db');
      this.#slot = checkSlotName(this.#options.slot ?? defaultSlotName(rows[0]!.db));
      await enterWalMode(client, this.#slot, this.#options.logger);
    } catch (error) {
      client.release();
      await this.#pool.end();
      throw error;
    }
    client.release();
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    await this.#reader?.stop().catch(() => undefined);
    await this.#loop;
    await this.#releaseLock();
    await this.#pool.end();
  }

  async #run(): Promise<void> {
    const logger = this.#options.logger;
    while (!this.#stopping) {
      try {
        if (await this.#takeLock()) {
          this.#isReader = true;
          logger.info({ slot: this.#slot }, 'WAL capture: this daemon reads the slot');
          const reader = new WalReader({
            databaseUrl: this.#options.databaseUrl,
            slot: this.#slot,
            pool: this.#pool,
            logger,
            batchSize: this.#options.batchSize,
            batchWaitMs: this.#options.batchWaitMs,
            onAppended: (events, changes) => {
              this.#appendedEvents += events;
              this.#options.onAppended?.(events, changes);
            },
          });
          this.#reader = reader;
          // stop() may have run while the lock was being taken, before there was a reader to stop.
          if (this.#stopping) await reader.stop();
          // The lock's session ending (the server restarting) must end the stream too.
          const lockLost = new Promise<never>((_resolve, reject) => {
            this.#lockClient?.once('error', reject);
            this.#lockClient?.once('end', () => reject(new Error('the reader lock connection closed')));
          });
          await Promise.race([reader.read(), lockLost]);
        }
      } catch (error) {
        if (!this.#stopping) {
          logger.warn(
            { err: describeError(error), slot: this.#slot },
            'WAL capture: reading stopped; retrying',
          );
          // A fresh session for the lock next time; meanwhile another daemon may take over.
          await this.#releaseLock();
        }
      }
      if (this.#reader) {
        await this.#reader.stop().catch(() => undefined);
        this.#reader = undefined;
      }
      this.#isReader = false;
      if (!this.#stopping) await this.#sleep(this.#options.retryMs);
    }
  }

  async #takeLock(): Promise<boolean> {
    if (!this.#lockClient) {
      const client = new pg.Client({
        connectionString: this.#options.databaseUrl,
        application_name: 'rulebook-wal-lock',
      });
      client.on('error', () => undefined);
      await client.connect();
      this.#lockClient = client;
    }
    try {
      const { rows } = await this.#lockClient.query<{ locked: boolean }>(TRY_READER_LOCK);
      if (rows[0]!.locked) return true;
      return false;
    } catch (error) {
      await this.#releaseLock();
      throw error;
    }
  }

  async #releaseLock(): Promise<void> {
    const client = this.#lockClient;
    this.#lockClient = undefined;
    // Ending the session releases the lock.
    await client?.end().catch(() => undefined);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
