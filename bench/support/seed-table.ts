/**
 * The capture benchmarks' source of rows: `bench.seed` with `rows` orders, and the sequence their
 * INSERT workloads draw new ids from. Each variant's table is a copy (`like bench.seed including
 * all`), reloaded from it before every run, so that every variant writes the same rows.
 */
export function seedTableSql(rows: number): string {
  return `
create schema bench;

create table bench.seed (
  id int primary key,
  customer_id int not null,
  status text not null,
  amount numeric(12, 2) not null,
  notes text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
insert into bench.seed (id, customer_id, status, amount, notes)
select g, g % 1000, (array['pending', 'paid', 'shipped'])[1 + g % 3], (g % 10000) / 100.0, 'order ' || g
  from generate_series(1, ${rows}) g;

create sequence bench.insert_ids start ${rows + 1};
`;
}
