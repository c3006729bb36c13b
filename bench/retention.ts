import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { DEFAULT_RETENTION } from '../src/config.js';
import { pruneExecutions } from '../src/retention/batches.js';
import { runBatches } from '../src/retention/run-batches.js';
import { PRUNING_DEFAULTS } from '../src/scheduler/maintenance.js';
import { EVENTS_EMPTY, RuleDatabase } from './engine.js';
import type { BenchContext, BenchSection } from './support/context.js';
import { formatMs, timeDrain } from './support/latency.js';
import { formatInt, formatRatio, markdownTable, median } from './support/report.js';

/**
 * Pruning a large backlog of old executions while the engine runs at full speed (issue 10): the
 * engine workload of bench/engine.ts (10 rules, scenario (b): every event matches one rule and
 * writes one execution and one alert), fed one backlog after another by a running daemon. OLD_ROWS
 * executions 100 days old are pruned by the maintenance job's own batches (runBatches with
 * pruneExecutions and PRUNING_DEFAULTS), switched on and off by window: off, on, on, on, off, ...
 * until nothing old is left, so that each window with pruning is compared with the windows
 * without it next to it in time (this machine's other load drifts over minutes).
 *
 * Lock waits are measured two ways: an application writer updates single rows of a registered
 * table at WRITER_RATE a second and records each statement's latency; and a sampler reads pg_locks
 * every SAMPLE_MS for lock requests not granted, keeping the longest wait (now() - waitstart) it
 * sees, with the waiting connection's application_name, the relation waited for and what holds it
 * (application_name, or the backend type: "autovacuum worker").
 */

const RULES = 10;
const WRITER_RATE = 50;
const SAMPLE_MS = 10;
/** With no end in sight (a far slower machine), the run stops after this long and says so. */
const MAX_PRUNE_MS = 15 * 60_000;

interface Window {
  readonly pruning: boolean;
  readonly events: number;
  readonly seconds: number;
  readonly pruned: number;
}

type State = 'on' | 'off';

const rateOf = (windows: readonly Window[]) =>
  windows.reduce((sum, w) => sum + w.events, 0) / windows.reduce((sum, w) => sum + w.seconds, 0);

/** Old executions, shaped like the engine's own (trigger_data and actions_executed of a similar size). */
const LOAD_OLD = `
insert into workflow.automation_executions
  (automation_rules_id, entity_type, trigger_data, actions_executed, status, execution_time_ms, executed_at)
select $3::uuid, 'e01', $4::jsonb, $5::jsonb, 'success', 3,
       localtimestamp - interval '100 days' + g * interval '1 millisecond'
  from generate_series($1::int, $2::int) g`;

const TRIGGER_DATA = {
  operation: 'on_update',
  entity: { id: '00000000-0000-4000-8000-000000000000', name: 'e01', schema: 'bench' },
  old: { id: 1234, status: 'new', amount: 234, n: 0 },
  new: { id: 1234, status: 'shipped', amount: 234, n: 0 },
  row_key: { id: 1234 },
  event_id: '123456',
};
const ACTIONS_EXECUTED = [
  {
    action_id: '00000000-0000-4000-8000-000000000001',
    action_type: 'create_alert',
    status: 'success',
    duration_ms: 1,
    result: { alert_id: '00000000-0000-4000-8000-000000000002', recipients: 1 },
  },
];

class LockSampler {
  readonly max: Record<State, number> = { on: 0, off: 0 };
  readonly waiter: Record<State, string> = { on: '—', off: '—' };
  #stopped = false;
  #done: Promise<void> | undefined;

  constructor(
    readonly client: pg.Client,
    readonly state: () => State,
  ) {}

  start(): void {
    this.#done = (async () => {
      while (!this.#stopped) {
        const { rows } = await this.client.query<{ ms: number | null; app: string | null }>(
          `select (extract(epoch from clock_timestamp() - l.waitstart) * 1000)::float8 as ms,
                  format('%s: %s %s%s, behind %s', a.application_name, l.locktype, l.mode,
                         ' on ' || l.relation::regclass::text,
                         (select coalesce(string_agg(coalesce(nullif(b.application_name, ''), b.backend_type), ', '), '?')
                            from pg_stat_activity b where b.pid = any (pg_blocking_pids(l.pid)))) as app
             from pg_locks l left join pg_stat_activity a on a.pid = l.pid
            where not l.granted and l.waitstart is not null
            order by l.waitstart limit 1`,
        );
        const row = rows[0];
        const state = this.state();
        if (row?.ms != null && row.ms > this.max[state]) {
          this.max[state] = row.ms;
          this.waiter[state] = row.app || 'unknown';
        }
        await sleep(SAMPLE_MS);
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }
}

/** An application's single-row updates of a registered table, paced; records each one's latency. */
class Writer {
  #stopped = false;
  #done: Promise<void> | undefined;
  readonly latencies: Record<State, number[]> = { on: [], off: [] };

  constructor(
    readonly client: pg.Client,
    readonly state: () => State,
  ) {}

  start(): void {
    this.#done = (async () => {
      let i = 0;
      const interval = 1000 / WRITER_RATE;
      const started = performance.now();
      while (!this.#stopped) {
        const wait = started + i * interval - performance.now();
        if (wait > 0.5) await sleep(wait);
        const state = this.state();
        const t = performance.now();
        // Rows the backlogs never touch; n is not watched by any rule, so nothing is captured.
        await this.client.query('update bench.e01 set n = n + 1 where id = $1', [1_001 + (i % 1_000)]);
        this.latencies[state].push(performance.now() - t);
        i++;
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }
}

async function resetRows(db: RuleDatabase): Promise<void> {
  await db.control.query('set session_replication_role = replica');
  try {
    for (let k = 1; k <= RULES; k++) {
      await db.control.query(
        `update bench.e${String(k).padStart(2, '0')} set status = 'new' where status <> 'new' and id <= 1000`,
      );
    }
  } finally {
    await db.control.query('reset session_replication_role');
  }
}

/** One backlog of (b) events, queued in one transaction and drained by the running engine. */
async function drainOnce(db: RuleDatabase, backlog: number): Promise<{ events: number; seconds: number }> {
  await resetRows(db);
  await db.writer.query(db.backlogSql('b', backlog));
  const started = performance.now();
  const drain = await timeDrain(
    async () => (await db.control.query<{ empty: boolean }>(EVENTS_EMPTY)).rows[0]!.empty,
    started,
    120_000,
  );
  if (!drain.complete) throw new Error(`retention bench: a backlog of ${backlog} events did not drain`);
  return { events: backlog, seconds: drain.seconds };
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const oldRows = ctx.quick ? 100_000 : 1_000_000;
  const backlog = ctx.quick ? 1_000 : 2_000;
  const started = performance.now();
  ctx.log('retention: setting up');
  const db = await RuleDatabase.create(ctx, RULES, 'bench_retention');
  let state: State = 'off';
  const sampleClient = new pg.Client({ connectionString: db.url, application_name: 'bench lock sampler' });
  const writerClient = new pg.Client({ connectionString: db.url, application_name: 'bench app writer' });
  const prunePool = new pg.Pool({
    connectionString: db.url,
    max: 1,
    application_name: 'rulebook-maintenance',
  });
  await sampleClient.connect();
  await writerClient.connect();
  const sampler = new LockSampler(sampleClient, () => state);
  const writer = new Writer(writerClient, () => state);
  let engine: Awaited<ReturnType<RuleDatabase['startEngine']>> | undefined;
  try {
    const loadStart = performance.now();
    const ruleId = (
      await db.control.query<{ id: string }>('select id from workflow.automation_rules limit 1')
    ).rows[0]!.id;
    for (let from = 1; from <= oldRows; from += 100_000) {
      await db.control.query(LOAD_OLD, [
        from,
        Math.min(from + 99_999, oldRows),
        ruleId,
        JSON.stringify(TRIGGER_DATA),
        JSON.stringify(ACTIONS_EXECUTED),
      ]);
    }
    await db.control.query('vacuum (analyze) workflow.automation_executions');
    await db.control.query('checkpoint');
    const size = (
      await db.control.query<{ size: string }>(
        `select pg_size_pretty(pg_total_relation_size('workflow.automation_executions')) as size`,
      )
    ).rows[0]!.size;
    ctx.log(
      `retention: ${formatInt(oldRows)} old executions (${size}) loaded in ${((performance.now() - loadStart) / 1000).toFixed(0)} s`,
    );

    engine = await db.startEngine();
    await drainOnce(db, backlog); // warm-up: plan caches, the rule cache
    sampler.start();
    writer.start();

    const windows: Window[] = [];
    let pruned = 0;
    let pruneSeconds = 0;
    let done = false;
    const pruneStart = performance.now();
    for (let i = 0; ; i++) {
      // off, on, on, on, off, ...; after the last rows went, one more window without.
      const pruning = !done && i % 4 !== 0;
      if (!pruning && done) {
        windows.push({ pruning, pruned: 0, ...(await drainOnce(db, backlog)) });
        break;
      }
      if (!pruning) {
        windows.push({ pruning, pruned: 0, ...(await drainOnce(db, backlog)) });
        continue;
      }
      state = 'on';
      const before = pruned;
      const prunedFrom = performance.now();
      const batches = runBatches(prunePool, pruneExecutions, DEFAULT_RETENTION.executionsMs!, {
        ...PRUNING_DEFAULTS,
        shouldStop: () => state === 'off',
        onProgress: (deleted) => {
          pruned = before + deleted;
        },
      }).then(() => {
        pruneSeconds += (performance.now() - prunedFrom) / 1000;
        if (state === 'on') done = true;
      });
      const drain = await drainOnce(db, backlog);
      state = 'off';
      await batches;
      windows.push({ pruning, pruned: pruned - before, ...drain });
      if (performance.now() - pruneStart > MAX_PRUNE_MS) break;
      if (!done && windows.length % 10 === 0) {
        ctx.log(`retention: ${formatInt(pruned)} pruned so far`);
      }
    }
    await writer.stop();
    await sampler.stop();
    await engine.stop();
    engine = undefined;
    ctx.log(
      `retention: ${formatInt(pruned)} executions pruned, ${pruneSeconds.toFixed(0)} s of pruning windows`,
    );

    const left = (
      await db.control.query<{ n: number }>(
        `select count(*)::int as n from workflow.automation_executions where executed_at < localtimestamp - interval '90 days'`,
      )
    ).rows[0]!.n;

    return {
      title: 'Retention: pruning old executions while the engine runs',
      markdown: report({
        oldRows,
        size,
        backlog,
        windows,
        sampler,
        writer,
        pruned,
        pruneSeconds,
        left,
        minutes: (performance.now() - started) / 60_000,
      }),
    };
  } finally {
    if (engine) await engine.stop();
    await Promise.allSettled([sampleClient.end(), writerClient.end(), prunePool.end()]);
    await db.close();
  }
}

interface ReportInput {
  readonly oldRows: number;
  readonly size: string;
  readonly backlog: number;
  readonly windows: readonly Window[];
  readonly sampler: LockSampler;
  readonly writer: Writer;
  readonly pruned: number;
  readonly pruneSeconds: number;
  readonly left: number;
  readonly minutes: number;
}

/** Each window with pruning over the mean of the nearest windows without it, before and after. */
function pairedRatios(windows: readonly Window[]): number[] {
  const rate = (w: Window) => w.events / w.seconds;
  const ratios: number[] = [];
  windows.forEach((w, i) => {
    if (!w.pruning) return;
    const before = windows
      .slice(0, i)
      .reverse()
      .find((o) => !o.pruning);
    const after = windows.slice(i + 1).find((o) => !o.pruning);
    const near = [before, after].filter((o): o is Window => o !== undefined);
    if (near.length) ratios.push(rate(w) / (near.reduce((sum, o) => sum + rate(o), 0) / near.length));
  });
  return ratios;
}

function report(input: ReportInput): string {
  const { windows, sampler, writer } = input;
  const on = windows.filter((w) => w.pruning);
  const off = windows.filter((w) => !w.pruning);
  const ratios = pairedRatios(windows);
  const ratio = median(ratios);
  const p99 = (values: readonly number[]) =>
    [...values].sort((a, b) => a - b)[Math.ceil(values.length * 0.99) - 1] ?? Number.NaN;
  const writes = (values: readonly number[]) =>
    `${formatMs(median(values))} / ${formatMs(p99(values))} / ${formatMs(values.length ? Math.max(...values) : Number.NaN)}`;
  const rows = (['off', 'on'] as const).map((state) => {
    const list = state === 'on' ? on : off;
    return [
      state === 'on' ? 'engine while pruning' : 'engine alone',
      String(list.length),
      `${formatInt(rateOf(list))} events/s`,
      state === 'on' ? `${formatRatio(ratio)} (min ${formatRatio(Math.min(...ratios))})` : '1.00x',
      formatInt(writer.latencies[state].length),
      writes(writer.latencies[state]),
      `${formatMs(sampler.max[state])} (${sampler.waiter[state]})`,
    ];
  });
  const table = markdownTable(
    [
      'Windows',
      'Count',
      'Engine rate',
      'vs alone (median paired)',
      'Writes',
      'Write p50 / p99 / max',
      'Longest lock wait seen',
    ],
    rows,
    ['left', 'right', 'right', 'right', 'right', 'right', 'left'],
  );
  const complete = input.pruned === input.oldRows && input.left === 0;
  const targets = [
    `- ${ratio >= 0.8 ? 'PASS' : 'MISS'} engine while pruning: ${formatRatio(ratio)} of its rate alone (median of ${ratios.length} paired windows; target ≥ 0.80x)`,
    `- ${sampler.max.on <= 100 ? 'PASS' : 'MISS'} no lock wait longer than 100 ms while pruning: longest seen ${formatMs(sampler.max.on)}`,
    `- ${complete ? 'PASS' : 'MISS'} every old execution pruned: ${formatInt(input.pruned)} of ${formatInt(input.oldRows)} in ${input.pruneSeconds.toFixed(0)} s of pruning windows (${formatInt(input.pruned / input.pruneSeconds)} rows/s), ${formatInt(input.left)} left`,
  ];
  return `${formatInt(input.oldRows)} executions 100 days old (${input.size} with indexes) sit in workflow.automation_executions.
The engine workload is bench/engine.ts's (b) with ${RULES} rules: every event matches one rule and writes one execution and one
alert. Backlogs of ${formatInt(input.backlog)} events are queued in one transaction each and drained by a running daemon
(\`concurrency 2, batchSize 100\`), one after another; each backlog is a window. Pruning is the maintenance job's own
batches (\`runBatches\` with \`pruneExecutions\` and \`PRUNING_DEFAULTS\`: 1,000 rows a batch, each its own transaction
with lock_timeout 200 ms, resting as long as each batch took), switched on for some windows and off for others in the
pattern off, on, on, on, off, ... until no old execution is left. Each window with pruning is compared with the nearest
windows without it, before and after (this machine's other load drifts); the figure is the median of those ratios.

Lock waits: an application writer updates single rows of a registered table (bench.e01, a column no rule watches) at
${WRITER_RATE}/s throughout, and its statement latencies are recorded (on this 2-CPU machine they include CPU queueing,
not only locks); a sampler reads \`pg_locks\` every ${SAMPLE_MS} ms for requests not granted and keeps the longest
\`clock_timestamp() - waitstart\` it sees, with the waiter's application_name (a wait that ends between two samples is
seen up to ${SAMPLE_MS} ms short, or not at all if shorter than that), with the relation waited for and what held it.

${table}

${targets.join('\n')}

The whole section took ${input.minutes.toFixed(1)} minutes.`;
}
