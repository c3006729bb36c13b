-- One bad rule or row never stops the rest (issue 9, items 3 and 9).
--
-- Only CREATE OR REPLACE of existing functions (their grants, migration 000010, stay as they are),
-- and one new helper, which workflow.apply_privileges() covers like every function in workflow.

-- Every action config is a JSON object. A rule action whose action_config is null, a number or an
-- array passed the checks of 000007 (they only looked at create_alert configs) and then stopped the
-- daemon's rule cache; now the INSERT or UPDATE itself fails with 22023, naming the rule and action.
create or replace function workflow.check_rule_action_config(p_action workflow.rule_actions) returns void
language plpgsql stable as $$
declare
  v_template workflow.action_templates;
  v_type text;
  v_config jsonb;
  v_rule_name text;
begin
  select name into v_rule_name from workflow.automation_rules where id = p_action.automation_rules_id;
  if jsonb_typeof(p_action.action_config) is distinct from 'object' then
    raise exception 'rule action "%" (%) of rule "%": action_config must be a JSON object such as {"action_type": "..."}, got %',
      p_action.name, p_action.id, coalesce(v_rule_name, p_action.automation_rules_id::text),
      coalesce(jsonb_typeof(p_action.action_config), 'SQL NULL')
      using errcode = 'invalid_parameter_value';
  end if;
  if p_action.template_id is not null then
    select * into v_template from workflow.action_templates where id = p_action.template_id;
    if not found then
      return; -- the foreign key reports it
    end if;
    v_type := coalesce(v_template.action_type, p_action.action_config ->> 'action_type');
    v_config := workflow.merge_action_config(v_template.default_config, p_action.action_config);
  else
    v_type := case when jsonb_typeof(p_action.action_config -> 'action_type') = 'string'
                   then p_action.action_config ->> 'action_type' end;
    v_config := p_action.action_config;
  end if;
  if v_type is distinct from 'create_alert' then
    return;
  end if;
  perform workflow.check_create_alert_config(
    format('rule action "%s" (%s) of rule "%s"', p_action.name, p_action.id, coalesce(v_rule_name, p_action.automation_rules_id::text)),
    v_config, true);
end
$$;

create or replace function workflow.check_action_template() returns trigger
language plpgsql as $$
declare
  v_action workflow.rule_actions;
begin
  if jsonb_typeof(new.default_config) is distinct from 'object' then
    raise exception 'action template "%" (%): default_config must be a JSON object, got %',
      new.name, new.id, coalesce(jsonb_typeof(new.default_config), 'SQL NULL')
      using errcode = 'invalid_parameter_value';
  end if;
  if new.action_type = 'create_alert' then
    perform workflow.check_create_alert_config(
      format('action template "%s" (%s)', new.name, new.id), new.default_config, false);
  end if;
  if tg_op = 'UPDATE' then
    -- The template's actions run with the new defaults: they must still be complete.
    for v_action in select * from workflow.rule_actions where template_id = new.id and is_active is not false loop
      if new.action_type = 'create_alert' then
        perform workflow.check_create_alert_config(
          format('rule action "%s" (%s), through action template "%s"', v_action.name, v_action.id, new.name),
          workflow.merge_action_config(new.default_config, v_action.action_config), true);
      end if;
    end loop;
  end if;
  return new;
end
$$;

-- Releases every reservation (mode "reserve") whose expires_at has passed and that is neither
-- released nor fulfilled; returns how many. Each reservation is released in its own subtransaction:
-- one that cannot be released (its inventory table was dropped) is left as it was, with the reason
-- in allocation_data.release_error and a WARNING, and the others are still released. Before, the
-- first such reservation rolled back every release, every minute. Only expired reservations are
-- visited (one subtransaction each): expires_at is read by jsonpath's datetime() in silent mode,
-- which yields nothing, rather than an error, for a value that is not a time, so no cast can fail
-- the query; such a reservation never expires, and is marked once with a release_error (22007).
-- datetime() reads ISO 8601 (what rulebook writes), except a final Z for UTC, which is rewritten
-- as +00:00 first (reservation_expiry_json).
create function workflow.reservation_expiry_json(p_allocation_data jsonb) returns jsonb
language sql immutable parallel safe as $$
  select jsonb_build_object('e', regexp_replace(p_allocation_data ->> 'expires_at', '([0-9])[Zz]$', '\1+00:00'))
$$;

create or replace function workflow.release_expired_reservations() returns integer
language plpgsql as $$
declare
  v_id uuid;
  v_count int := 0;
  v_state text;
  v_message text;
begin
  perform pg_advisory_xact_lock(hashtextextended('rulebook.allocate_inventory', 0));
  update workflow.allocation_results r
     set allocation_data = allocation_data || jsonb_build_object(
           'release_error', jsonb_build_object('at', now(), 'sqlstate', '22007',
             'message', format('expires_at %s is not a time, so the reservation never expires', allocation_data -> 'expires_at')))
   where r.allocation_data ->> 'mode' = 'reserve'
     and r.allocation_data ->> 'status' in ('success', 'partial')
     and r.allocation_data ? 'expires_at'
     and not (r.allocation_data ? 'released_at' or r.allocation_data ? 'fulfilled_at' or r.allocation_data ? 'release_error')
     -- Silent mode answers null, not false, when datetime() cannot read the value.
     and not coalesce(jsonb_path_exists(workflow.reservation_expiry_json(r.allocation_data), '$.e.datetime()', '{}', true), false);
  get diagnostics v_count = row_count;
  if v_count > 0 then
    raise warning 'workflow.release_expired_reservations: % reservation(s) have an expires_at that is not a time; see allocation_data.release_error',
      v_count;
  end if;
  v_count := 0;
  for v_id in
    select r.id
      from workflow.allocation_results r
     where r.allocation_data ->> 'mode' = 'reserve'
       and r.allocation_data ->> 'status' in ('success', 'partial')
       and not (r.allocation_data ? 'released_at' or r.allocation_data ? 'fulfilled_at')
       and jsonb_path_exists_tz(workflow.reservation_expiry_json(r.allocation_data),
                                '$.e.datetime() ? (@ <= $now.datetime())', jsonb_build_object('now', now()), true)
     order by r.created_date, r.id
  loop
    begin
      if workflow.release_allocation(v_id, 'reservation expired') then
        v_count := v_count + 1;
      end if;
    exception when others then
      get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
      raise warning 'workflow.release_expired_reservations: reservation % was not released: % (SQLSTATE %)',
        v_id, v_message, v_state;
      update workflow.allocation_results
         set allocation_data = allocation_data || jsonb_build_object(
               'release_error', jsonb_build_object('at', now(), 'sqlstate', v_state, 'message', v_message))
       where id = v_id;
    end;
  end loop;
  return v_count;
end
$$;
