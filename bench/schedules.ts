import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { ManualClock } from '../src/clock.js';
import { createLogger } from '../src/logger.js';
import { Scheduler } from '../src/scheduler/scheduler.js';
import type { BenchContext, BenchSection } from './support/context.js';
import { formatInt, formatSeconds, markdownTable } from './support/report.js';

/**
 * A scheduled rule over rows: one tick of `status equals 'pending' and created_at older_than
 * '2 days'` over a table of 1,000,000 orders (100,000 with --quick), of which half match. The
 * scheduler runs in this process with its default batch size, driven by a manual clock; what is
 * measured is the tick from its start to its last row queued (one event per matching row in
 * workflow.events; no engine runs them), and the process's resident memory, sampled every 20 ms.
 *
 * Baseline, same server and run: the same rows queued by one INSERT ... SELECT, the least work
 * that queues them (but one transaction for the whole table, which the scheduler avoids).
 */

const TICK = new Date('2030-01-01T06:00:00Z');
const BATCH_SIZE = 1_000;

interface Measured {
  readonly label: string;
  readonly seconds: number;
  readonly rows: number;
  readonly transactions: string;
  readonly peakRssMiB?: number;
  readonly baselineRssMiB?: number;
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const rows = ctx.quick ? 100_000 : 1_000_000;
  const url = await ctx.createDatabase('rulebook_bench_schedules');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    ctx.log(`schedules: creating ${formatInt(rows)} orders`);
    await client.query(`create schema bench`);
    await client.query(
      `create table bench.orders (id bigint primary key, status text not null, created_at timestamptz not null, total numeric not null)`,
    );
    await client.query(
      `insert into bench.orders
       select i, case when i % 2 = 0 then 'pending' else 'shipped' end,
              $2::timestamptz - make_interval(hours => (i % 96)::int), (i % 1000) / 10.0
         from generate_series(1, $1::int) i`,
      [rows, TICK],
    );
    await client.query('vacuum analyze bench.orders');
    const entityId = (
      await client.query<{ id: string }>(`select workflow.register_entity('bench.orders') as id`)
    ).rows[0]!.id;
    const dba = (
      await client.query<{ id: string }>(
        `insert into core.users (email, name) values ('bench@example.com', 'Bench') returning id`,
      )
    ).rows[0]!.id;
    const conditions = {
      schedule: '0 6 * * *',
      field_conditions: [
        { field_name: 'status', operator: 'equals', value: 'pending' },
        { field_name: 'created_at', operator: 'older_than', value: '2 days' },
      ],
    };
    const ruleId = (
      await client.query<{ id: string }>(
        `insert into workflow.automation_rules
           (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by,
            created_date, updated_date)
         select 'Stale orders', e.id, e.entity_type_id, t.id, $2, $3, $3, $4, $4
           from workflow.entities e, workflow.trigger_types t where e.id = $1 and t.name = 'scheduled'
         returning id`,
        [entityId, JSON.stringify(conditions), dba, new Date(TICK.getTime() - 3_600_000)],
      )
    ).rows[0]!.id;
    const expected = Number(
      (
        await client.query<{ count: string }>(
          `select count(*) from bench.orders where status = 'pending' and created_at < $1::timestamptz - interval '2 days'`,
          [TICK],
        )
      ).rows[0]!.count,
    );

    ctx.log('schedules: baseline (one INSERT ... SELECT)');
    const baselineStart = performance.now();
    const baseline = await client.query(
      `insert into workflow.events (entity_id, operation, row_key, new_row, rule_id)
       select $1, 'scheduled', jsonb_build_object('id', t.id), to_jsonb(t), $2
         from bench.orders t where t.status = 'pending' and t.created_at < $3::timestamptz - interval '2 days'`,
      [entityId, ruleId, TICK],
    );
    const baselineSeconds = (performance.now() - baselineStart) / 1000;
    await client.query('truncate workflow.events');

    ctx.log('schedules: one tick of the scheduler');
    const clock = new ManualClock(new Date(TICK.getTime() - 60_000));
    const scheduler = new Scheduler({
      databaseUrl: url,
      logger: createLogger('warn'),
      clock,
      batchSize: BATCH_SIZE,
      pollIntervalMs: 60_000,
    });
    await scheduler.start();
    const rssBefore = process.memoryUsage().rss;
    let peakRss = rssBefore;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
    let seconds: number;
    try {
      clock.set(TICK);
      const started = performance.now();
      await scheduler.runDue();
      seconds = (performance.now() - started) / 1000;
    } finally {
      clearInterval(sampler);
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
      await scheduler.stop();
    }
    const [tick] = (
      await client.query<{ status: string; rows_queued: string }>(
        'select status, rows_queued from workflow.schedule_runs where rule_id = $1',
        [ruleId],
      )
    ).rows;
    const queued = Number(tick?.rows_queued ?? 0);
    if (tick?.status !== 'done' || queued !== expected || Number(baseline.rowCount) !== expected) {
      throw new Error(
        `schedules: expected ${expected} rows queued, got ${queued} (${tick?.status}); baseline ${baseline.rowCount}`,
      );
    }

    const results: Measured[] = [
      {
        label: `scheduler, batches of ${formatInt(BATCH_SIZE)}`,
        seconds,
        rows: queued,
        transactions: formatInt(Math.ceil(queued / BATCH_SIZE) + 1),
        peakRssMiB: peakRss / 2 ** 20,
        baselineRssMiB: rssBefore / 2 ** 20,
      },
      {
        label: 'baseline: one INSERT ... SELECT',
        seconds: baselineSeconds,
        rows: expected,
        transactions: '1',
      },
    ];
    const table = markdownTable(
      ['run', 'rows matched', 'time', 'rows matched / s', 'transactions', 'RSS before', 'peak RSS'],
      results.map((result) => [
        result.label,
        formatInt(result.rows),
        formatSeconds(result.seconds),
        formatInt(result.rows / result.seconds),
        result.transactions,
        result.baselineRssMiB === undefined ? '—' : `${result.baselineRssMiB.toFixed(0)} MiB`,
        result.peakRssMiB === undefined ? '—' : `${result.peakRssMiB.toFixed(0)} MiB`,
      ]),
      ['left', 'right', 'right', 'right', 'right', 'right', 'right'],
    );
    const markdown = [
      `One tick of a scheduled rule (\`status equals 'pending'\` and \`created_at older_than '2 days'\`) over ` +
        `${formatInt(rows)} rows, of which ${formatInt(expected)} match; each matching row becomes one event ` +
        'in workflow.events (no engine runs them here). The scheduler runs in the benchmark process; RSS is ' +
        "that process's resident memory, sampled every 20 ms during the tick.",
      '',
      table,
    ].join('\n');
    return { title: 'Scheduled rules over rows', markdown };
  } finally {
    await client.end();
  }
}
