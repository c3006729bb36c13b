import pgListen, { type Subscriber } from 'pg-listen';
import type { Logger } from '../logger.js';
import { backoffMs } from '../backoff.js';

export interface ListenerOptions {
  readonly databaseUrl: string;
  readonly channels: readonly string[];
  /** The connection's application_name; 'rulebook-listener' unless given. */
  readonly applicationName?: string;
  readonly logger: Logger;
  readonly onNotification: (channel: string, payload: string) => void;
  /** Called after every (re)connection: notifications sent meanwhile are lost, so sweep. */
  readonly onConnected: () => void;
}

// pg-listen is CommonJS with an ES-style default export.
const createSubscriber = pgListen.default;

/**
 * LISTENs on rulebook's channels and keeps doing so across database restarts: pg-listen retries with
 * backoff; if it gives up, a new subscriber is started after a pause.
 */
export class NotificationListener {
  #subscriber: Subscriber | undefined;
  #stopped = false;
  #restartTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: ListenerOptions) {}

  async start(): Promise<void> {
    this.#stopped = false;
    await this.#connect();
  }

  async #connect(): Promise<void> {
    const subscriber = createSubscriber(
      {
        connectionString: this.options.databaseUrl,
        application_name: this.options.applicationName ?? 'rulebook-listener',
      },
      {
        parse: (payload: string) => payload,
        retryInterval: (attempt: number) => backoffMs(attempt),
        retryTimeout: 60_000,
        paranoidChecking: 10_000,
      },
    );
    this.#subscriber = subscriber;
    subscriber.events.on('notification', ({ channel, payload }) => {
      this.options.onNotification(channel, typeof payload === 'string' ? payload : '');
    });
    subscriber.events.on('connected', () => this.options.onConnected());
    subscriber.events.on('reconnect', (attempt) =>
      this.options.logger.warn({ attempt }, 'listener reconnecting'),
    );
    subscriber.events.on('error', (error) => {
      this.options.logger.error({ err: error }, 'listener lost its connection; starting a new one');
      void subscriber.close().catch(() => {});
      this.#scheduleRestart();
    });
    try {
      await subscriber.connect();
      for (const channel of this.options.channels) await subscriber.listenTo(channel);
      this.options.onConnected();
    } catch (error) {
      this.options.logger.error({ err: error }, 'listener could not connect; retrying');
      void subscriber.close().catch(() => {});
      this.#scheduleRestart();
    }
  }

  #scheduleRestart(): void {
    if (this.#stopped || this.#restartTimer) return;
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (!this.#stopped) void this.#connect();
    }, 1_000);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    await this.#subscriber?.close().catch(() => {});
  }
}
