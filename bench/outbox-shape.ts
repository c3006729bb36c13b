/**
 * `npm run bench -- --only outbox-shape`: what each way of giving Debezium's outbox event router a
 * table costs a captured write (sql/000015_kafka_outbox.sql, docs/kafka.md). One writer session
 * runs (a) 20,000 single-row UPDATEs of a watched column in a plpgsql loop and (b) one UPDATE of
 * all 100,000 rows, under each variant of the generated capture function, the variants in rotated
 * order for several rounds. The figure is the CPU time of the writer's backend (/proc/<pid>/schedstat)
 * per captured row: on a shared machine, wall time mostly measures the neighbours.
 */
import { backendCpu } from './support/cpu.js';
import pg from 'pg';
import type { BenchContext, BenchSection } from './support/context.js';
import { markdownTable, median } from './support/report.js';

const ROWS = 100_000;

const SETUP_SQL = `
create schema bench;
create table bench.seed (id int primary key, customer_id int not null, status text not null,
  amount numeric(12, 2) not null, notes text, created_at timestamptz not null default now(),
  updated_at timestamptz not null default now());
insert into bench.seed (id, customer_id, status, amount, notes)
select g, g % 1000, (array['pending', 'paid', 'shipped'])[1 + g % 3], (g % 10000) / 100.0, 'order ' || g
  from generate_series(1, ${ROWS}) g;
create table bench.t (like bench.seed including all);
insert into bench.t select * from bench.seed;
insert into core.users (email, name) values ('bench@example.com', 'bench');
-- The rejected alternatives' storage: a second table in the router's default shape, and a
-- prepared payload column.
create table workflow.bench_kafka_outbox (id uuid primary key default gen_random_uuid(),
  aggregatetype text not null, aggregateid text not null, type text not null, payload jsonb);
grant insert on workflow.bench_kafka_outbox to rulebook_capture;
alter table workflow.events add column bench_payload jsonb;
create function bench.single(n int) returns void language plpgsql as $$
begin
  for i in 1..n loop
    update bench.t set status = case when status = 'shipped' then 'paid' else 'shipped' end where id = i;
  end loop;
end $$;
`;

const BULK_SQL = `update bench.t set status = case when status = 'shipped' then 'paid' else 'shipped' end`;

interface Variant {
  readonly name: string;
  readonly body: string;
  /** Whether 000015's fill_aggregate_type trigger on workflow.events is enabled. */
  readonly fillTrigger: boolean;
}

/** The generated body, and the bodies of the alternatives derived from it by textual edits. */
function variants(generated: string): Variant[] {
  const check = (body: string, marker: string): string => {
    if (!body.includes(marker))
      throw new Error(`outbox-shape bench: the generated capture function changed shape`);
    return body;
  };
  check(generated, `'bench.t', 'on_update'`);
  const before = generated
    .replaceAll('entity_id, aggregate_type,', 'entity_id,')
    .replaceAll(`'bench.t', 'on_`, `'on_`);
  const both = `pg_catalog.jsonb_build_object('old', pg_catalog.to_jsonb(old), 'new', pg_catalog.to_jsonb(new))`;
  const payload = generated
    .replace('old_row, new_row, actor_id, depth)', 'old_row, new_row, bench_payload, actor_id, depth)')
    .replace(
      'pg_catalog.to_jsonb(old), pg_catalog.to_jsonb(new), ',
      `pg_catalog.to_jsonb(old), pg_catalog.to_jsonb(new), ${both}, `,
    );
  const table = before.replace(
    /(values \('[0-9a-f-]+', 'on_update'[^;]*;)/,
    `$1\n    insert into workflow.bench_kafka_outbox (aggregatetype, aggregateid, type, payload)\n` +
      `    values ('bench.t', pg_catalog.jsonb_build_object('id', new.id)::text, 'on_update', ${both});`,
  );
  return [
    { name: 'before 000015 (no aggregate_type)', body: before, fillTrigger: false },
    { name: 'aggregate_type literal + fill trigger (chosen)', body: generated, fillTrigger: true },
    { name: 'aggregate_type literal, no fill trigger', body: generated, fillTrigger: false },
    {
      name: 'aggregate_type + prepared payload column',
      body: check(payload, 'bench_payload'),
      fillTrigger: true,
    },
    {
      name: 'second table in the router default shape',
      body: check(table, 'bench_kafka_outbox'),
      fillTrigger: false,
    },
  ];
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const rounds = ctx.quick ? 1 : 7;
  const single = ctx.quick ? 2_000 : 20_000;
  const url = await ctx.createDatabase('bench_outbox_shape');
  const control = new pg.Client({ connectionString: url });
  await control.connect();
  try {
    await control.query(SETUP_SQL);
    const [entity] = (await control.query<{ id: string }>(`select workflow.register_entity('bench.t') as id`))
      .rows;
    await control.query(
      `insert into workflow.automation_rules
         (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
       select 'shipped', e.id, e.entity_type_id, t.id, $2::jsonb, u.id, u.id
         from workflow.entities e, workflow.trigger_types t, core.users u where e.id = $1 and t.name = 'on_update'`,
      [
        entity!.id,
        JSON.stringify({
          field_conditions: [{ field_name: 'status', operator: 'changed_to', value: 'shipped' }],
        }),
      ],
    );
    const fn = `workflow.capture_${entity!.id.replaceAll('-', '')}`;
    const [{ prosrc }] = (
      await control.query<{ prosrc: string }>(`select prosrc from pg_proc where oid = $1::regprocedure`, [
        `${fn}()`,
      ])
    ).rows as [{ prosrc: string }];
    const all = variants(prosrc);
    const results = new Map(all.map((v) => [v.name, { single: [] as number[], bulk: [] as number[] }]));
    const reset = async () => {
      await control.query('truncate workflow.events, workflow.bench_kafka_outbox, bench.t');
      await control.query('insert into bench.t select * from bench.seed');
      await control.query('vacuum analyze bench.t, workflow.events, workflow.bench_kafka_outbox');
    };
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < all.length; i++) {
        const variant = all[(i + round) % all.length]!;
        ctx.log(`outbox-shape: round ${round + 1}/${rounds}, ${variant.name}`);
        // CREATE OR REPLACE keeps the owner (rulebook_capture) and the grants.
        await control.query(
          `create or replace function ${fn}() returns trigger language plpgsql security definer as $body$${variant.body}$body$`,
        );
        await control.query(
          `alter table workflow.events ${variant.fillTrigger ? 'enable' : 'disable'} trigger fill_aggregate_type`,
        );
        await reset();
        // A new session per variant: plpgsql compiles the function anew, as after a rule change.
        const writer = new pg.Client({ connectionString: url });
        await writer.connect();
        try {
          const [{ pid }] = (await writer.query<{ pid: number }>('select pg_backend_pid() as pid')).rows as [
            { pid: number },
          ];
          let start = backendCpu(pid);
          await writer.query('select bench.single($1)', [single]);
          const singleSeconds = backendCpu(pid) - start;
          await reset();
          start = backendCpu(pid);
          await writer.query(BULK_SQL);
          const bulkSeconds = backendCpu(pid) - start;
          const [{ n }] = (
            await control.query<{ n: number }>('select count(*)::int as n from workflow.events')
          ).rows as [{ n: number }];
          if (n !== ROWS)
            throw new Error(`outbox-shape bench: ${variant.name} captured ${n} of ${ROWS} rows`);
          results.get(variant.name)!.single.push((singleSeconds * 1e6) / single);
          results.get(variant.name)!.bulk.push((bulkSeconds * 1e6) / ROWS);
        } finally {
          await writer.end();
        }
      }
    }
    const base = results.get(all[0]!.name)!;
    const rows = all.map((variant) => {
      const r = results.get(variant.name)!;
      const vs = (values: number[], baseline: number[]) =>
        `${((median(values) / median(baseline) - 1) * 100).toFixed(0).replace(/^(?!-)/, '+')}%`;
      return [
        variant.name,
        median(r.single).toFixed(1),
        vs(r.single, base.single),
        median(r.bulk).toFixed(1),
        vs(r.bulk, base.bulk),
      ];
    });
    const table = markdownTable(
      [
        'capture function',
        'single-row UPDATE, us CPU/row',
        'vs before',
        '100,000-row UPDATE, us CPU/row',
        'vs before',
      ],
      rows,
      ['left', 'right', 'right', 'right', 'right'],
    );
    return {
      title: 'Outbox shape for Debezium: what a captured UPDATE pays',
      markdown: `${table}\n\nMedians of ${rounds} rounds (variants rotated each round); CPU time of the writing backend per captured row; ${single.toLocaleString('en-US')} single-row UPDATEs in a plpgsql loop, and one UPDATE of ${ROWS.toLocaleString('en-US')} rows; bench.t has 7 columns, the rule watches status.`,
    };
  } finally {
    await control.end();
  }
}
