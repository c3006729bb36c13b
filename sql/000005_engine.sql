-- What the daemon needs beyond capture: manual and retried events, rule-change signals, and
-- execution bookkeeping that can be written in any order inside one transaction.

-- A rule run by hand (workflow.run_rule) is an event aimed at one rule.
alter table workflow.events add column rule_id uuid;

-- Actions queue deliveries before the execution row that they belong to is written (it records
-- how the actions went), so the reference is checked at commit.
alter table workflow.notification_deliveries
  alter constraint notification_deliveries_automation_execution_id_fkey deferrable initially deferred;

-- Bumped by every change to what the rule cache holds; daemons poll it, and a NOTIFY on
-- rulebook_rules makes them look at once.
create table workflow.rule_set_version (
  singleton boolean primary key default true check (singleton),
  version bigint not null default 0,
  changed_at timestamptz not null default now()
);
insert into workflow.rule_set_version default values;

create function workflow.bump_rule_set_version() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  update workflow.rule_set_version set version = version + 1, changed_at = now();
  perform pg_notify('rulebook_rules', '');
  return null;
end
$$;

create trigger bump_rule_set_version after insert or update or delete or truncate on workflow.automation_rules
  for each statement execute function workflow.bump_rule_set_version();
create trigger bump_rule_set_version after insert or update or delete or truncate on workflow.rule_actions
  for each statement execute function workflow.bump_rule_set_version();
create trigger bump_rule_set_version after insert or update or delete or truncate on workflow.action_templates
  for each statement execute function workflow.bump_rule_set_version();
create trigger bump_rule_set_version after insert or update or delete or truncate on workflow.rule_dependencies
  for each statement execute function workflow.bump_rule_set_version();
create trigger bump_rule_set_version after insert or update or delete or truncate on workflow.entities
  for each statement execute function workflow.bump_rule_set_version();
create trigger bump_rule_set_version after insert or update or delete or truncate on workflow.trigger_types
  for each statement execute function workflow.bump_rule_set_version();

-- Puts a dead or failing event back in the queue, as if it had just been captured.
create function workflow.retry_event(p_event_id bigint) returns boolean
language plpgsql as $$
begin
  update workflow.events
     set state = 'pending', attempts = 0, run_after = null, last_error = null
   where id = p_event_id;
  if not found then
    raise exception 'workflow.retry_event: there is no event %', p_event_id
      using errcode = 'no_data_found',
            hint = 'Handled events leave workflow.events; their executions are in workflow.automation_executions.';
  end if;
  perform pg_notify('rulebook_events', '');
  return true;
end
$$;

create function workflow.retry_dead_events() returns bigint
language plpgsql as $$
declare
  v_count bigint;
begin
  update workflow.events set state = 'pending', attempts = 0, run_after = null, last_error = null
   where state = 'dead';
  get diagnostics v_count = row_count;
  if v_count > 0 then
    perform pg_notify('rulebook_events', '');
  end if;
  return v_count;
end
$$;

-- Runs one rule by hand on the given row: queues an event aimed at that rule, whatever its
-- conditions, and returns the event id. The execution row's trigger_data carries that id.
create function workflow.run_rule(p_rule_id uuid, p_row jsonb) returns bigint
language plpgsql as $$
declare
  v_rule workflow.automation_rules;
  v_key jsonb;
  v_id bigint;
  v_relation regclass;
begin
  select * into v_rule from workflow.automation_rules where id = p_rule_id;
  if not found then
    raise exception 'workflow.run_rule: there is no automation rule %', p_rule_id using errcode = 'no_data_found';
  end if;
  if p_row is null or jsonb_typeof(p_row) <> 'object' then
    raise exception 'workflow.run_rule: the row must be a JSON object, got %', coalesce(jsonb_typeof(p_row), 'null')
      using errcode = 'invalid_parameter_value';
  end if;
  select workflow.entity_relation(schema_name, name) into v_relation from workflow.entities where id = v_rule.entity_id;
  select coalesce(jsonb_object_agg(a.attname, p_row -> a.attname::text), '{}') into v_key
    from pg_catalog.pg_index i
    join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
   where i.indrelid = v_relation and i.indisprimary;
  insert into workflow.events (entity_id, operation, row_key, old_row, new_row, actor_id, rule_id)
  values (v_rule.entity_id, 'manual', v_key, null, p_row, nullif(current_setting('workflow.actor_id', true), ''), p_rule_id)
  returning id into v_id;
  perform pg_notify('rulebook_events', '');
  return v_id;
end
$$;
