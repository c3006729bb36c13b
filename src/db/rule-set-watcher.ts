import type pg from 'pg';
import type { Logger } from '../logger.js';
import { WakeSignal } from '../wake-signal.js';

/** Told the current rule set version at every look; reloads when it differs from what it holds. */
export type RuleSetSubscriber = (version: string | undefined) => Promise<void> | void;

export interface RuleSetWatcherOptions {
  /** Where to read workflow.rule_set_version; the owner of the pool ends it. */
  readonly pool: pg.Pool;
  readonly logger: Logger;
  /** How often to look when no NOTIFY rulebook_rules arrives (a NOTIFY is only a latency hint). */
  readonly pollIntervalMs: number;
}

/**
 * The one watcher of workflow.rule_set_version, which every change to rules, actions, templates or
 * entities bumps: it looks every pollIntervalMs, and at once when woken (the owner of a LISTEN on
 * rulebook_rules calls wake()), and tells every subscriber (the engine's rule cache, the scheduler)
 * the version it read. One daemon reads the version once per look, however many parts care.
 */
export class RuleSetWatcher {
  readonly #options: RuleSetWatcherOptions;
  readonly #wake = new WakeSignal();
  readonly #subscribers = new Set<RuleSetSubscriber>();
  #loop: Promise<void> | undefined;
  #stopping = false;

  constructor(options: RuleSetWatcherOptions) {
    this.#options = options;
  }

  /** Calls `subscriber` after every look from now on; returns the call that stops it. */
  subscribe(subscriber: RuleSetSubscriber): () => void {
    this.#subscribers.add(subscriber);
    return () => this.#subscribers.delete(subscriber);
  }

  /** Looks now instead of at the next poll (a NOTIFY rulebook_rules, a reconnected listener). */
  wake(): void {
    this.#wake.wake();
  }

  start(): void {
    this.#stopping = false;
    this.#loop ??= this.#run();
  }

  /** Stops looking; resolves once a look under way (and the reloads it started) has finished. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake.wake();
    await this.#loop;
    this.#loop = undefined;
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      await this.#wake.wait(this.#options.pollIntervalMs);
      if (this.#stopping) break;
      await this.#look();
    }
  }

  async #look(): Promise<void> {
    let version: string | undefined;
    try {
      const { rows } = await this.#options.pool.query<{ version: string }>(
        'select version from workflow.rule_set_version',
      );
      version = rows[0]?.version;
    } catch (error) {
      this.#options.logger.warn({ err: error }, 'could not check for rule changes');
      return;
    }
    await Promise.all(
      [...this.#subscribers].map(async (subscriber) => {
        try {
          await subscriber(version);
        } catch (error) {
          this.#options.logger.warn({ err: error }, 'could not apply rule changes');
        }
      }),
    );
  }
}
