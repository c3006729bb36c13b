import type http from 'node:http';
import type pg from 'pg';
import type { Logger } from '../logger.js';
import { registerAccountRoutes } from './account-routes.js';
import { AlertStream, type AlertStreamLimits } from './alert-stream.js';
import { registerAlertRoutes } from './alerts-routes.js';
import { Authenticator } from './auth.js';
import { registerNotificationRoutes } from './notifications-routes.js';
import { registerPage } from './page.js';
import { FailureLimiter } from './rate-limit.js';
import { Router } from './router.js';

export interface StaffApiOptions {
  readonly pool: pg.Pool;
  /** For the event stream's LISTEN connection, which cannot come from the pool. */
  readonly databaseUrl: string;
  readonly logger: Logger;
  /** Failed sign-ins allowed per client address in a window before it gets 429 (default 10 a minute). */
  readonly authFailures?: { readonly max: number; readonly windowMs: number };
  readonly heartbeatMs?: number;
  /** Caps on the alert event stream (see alert-stream.ts for the defaults). */
  readonly streamLimits?: Partial<AlertStreamLimits>;
}

/** The staff page and the JSON API behind it, as one router; see docs/staff-api.md. */
export class StaffApi {
  readonly #router = new Router();
  readonly #stream: AlertStream;

  constructor(options: StaffApiOptions) {
    const limits = options.authFailures ?? { max: 10, windowMs: 60_000 };
    const auth = new Authenticator(options.pool, new FailureLimiter(limits.max, limits.windowMs));
    this.#stream = new AlertStream({
      pool: options.pool,
      databaseUrl: options.databaseUrl,
      logger: options.logger,
      auth,
      heartbeatMs: options.heartbeatMs,
      ...(options.streamLimits ? { limits: options.streamLimits } : {}),
    });
    registerPage(this.#router);
    registerAccountRoutes(this.#router, options.pool, auth);
    this.#stream.register(this.#router);
    registerAlertRoutes(this.#router, options.pool, auth);
    registerNotificationRoutes(this.#router, options.pool, auth);
  }

  /** Answers the request and returns true, or returns false when no route's path matches. */
  handle(request: http.IncomingMessage, response: http.ServerResponse, url: URL): Promise<boolean> {
    return this.#router.handle(request, response, url);
  }

  /** Ends the open event streams and their LISTEN connection. */
  close(): Promise<void> {
    return this.#stream.close();
  }
}
