import { loadConfig } from '../config.js';
import { startDaemon } from '../daemon.js';
import { createLogger } from '../logger.js';
import { flag, type Command } from './command.js';

const STOP_TIMEOUT_MS = 20_000;

export const startCommand: Command = {
  name: 'start',
  usage: '[--no-http]',
  summary: `apply pending migrations, then run the engine, the scheduler of
scheduled rules, the delivery worker, the maintenance job and the HTTP
server (--no-http: all but the HTTP server)`,
  details: `SIGTERM and SIGINT finish the work in hand and exit 0. The daemon records itself in
workflow.daemons every RULEBOOK_HEARTBEAT_INTERVAL_MS (see \`rulebook status\`).`,
  options: { 'no-http': { type: 'boolean', help: 'run everything but the HTTP server' } },
  async run({ values }) {
    const config = loadConfig();
    const logger = createLogger(config.logLevel);
    // Listen for signals before starting, so that one arriving during start-up stops cleanly too.
    let stopRequested: (signal: string) => void = () => {};
    const signalled = new Promise<string>((resolve) => (stopRequested = resolve));
    // A signal while start-up waits for the database ends the wait.
    const startUp = new AbortController();
    const onSignal = (name: string) => {
      startUp.abort();
      stopRequested(name);
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
    const daemon = await startDaemon(config, logger, {
      http: !flag(values, 'no-http'),
      signal: startUp.signal,
    });
    const signal = await signalled;
    logger.info({ signal }, 'stopping');
    setTimeout(() => {
      logger.error('stop took too long; exiting');
      process.exit(1);
    }, STOP_TIMEOUT_MS).unref();
    await daemon.stop();
  },
};
