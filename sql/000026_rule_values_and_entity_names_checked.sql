-- Event rules get the value check scheduled rules had since 000016: a condition whose value the
-- column's type cannot hold ("greater_than": "abc" on a numeric column, a misspelt enum label) was
-- accepted and then never matched, without a word. As in 000016 otherwise.
create or replace function workflow.check_trigger_conditions(
  p_rule_name text, p_conditions jsonb, p_relation regclass, p_trigger_type text
) returns void
language plpgsql stable as $$
declare
  v_conditions jsonb;
  v_condition jsonb;
  v_index int := 0;
  v_field text;
  v_operator text;
  v_where text;
  v_problem text;
  v_type regtype;
  v_type_name text;
  v_value jsonb;
begin
  if p_conditions is null or jsonb_typeof(p_conditions) = 'null' then
    return;
  end if;
  if jsonb_typeof(p_conditions) <> 'object' then
    raise exception 'automation rule "%": trigger_conditions must be a JSON object, got %',
      p_rule_name, jsonb_typeof(p_conditions)
      using errcode = 'invalid_parameter_value',
            hint = 'Write {"field_conditions": [{"field_name": "status", "operator": "equals", "value": "shipped"}]}.';
  end if;
  v_conditions := p_conditions -> 'field_conditions';
  if v_conditions is null or jsonb_typeof(v_conditions) = 'null' then
    return;
  end if;
  if jsonb_typeof(v_conditions) <> 'array' then
    raise exception 'automation rule "%": trigger_conditions.field_conditions must be an array, got %',
      p_rule_name, jsonb_typeof(v_conditions)
      using errcode = 'invalid_parameter_value';
  end if;
  for v_condition in select value from jsonb_array_elements(v_conditions) loop
    v_where := format('automation rule "%s": trigger_conditions.field_conditions[%s]', p_rule_name, v_index);
    if jsonb_typeof(v_condition) <> 'object' then
      raise exception '%: each condition must be a JSON object, got %', v_where, jsonb_typeof(v_condition)
        using errcode = 'invalid_parameter_value';
    end if;
    if jsonb_typeof(v_condition -> 'field_name') is distinct from 'string' then
      raise exception '%: field_name is missing or not a string', v_where
        using errcode = 'invalid_parameter_value';
    end if;
    v_field := v_condition ->> 'field_name';
    if jsonb_typeof(v_condition -> 'operator') is distinct from 'string' then
      raise exception '%: operator is missing or not a string', v_where
        using errcode = 'invalid_parameter_value';
    end if;
    v_operator := v_condition ->> 'operator';
    if not v_operator = any (workflow.condition_operators()) then
      raise exception '%: unknown operator "%"', v_where, v_operator
        using errcode = 'invalid_parameter_value',
              hint = 'Known operators: ' || array_to_string(workflow.condition_operators(), ', ') || '.';
    end if;
    v_type := null;
    if p_relation is not null then
      select atttypid::regtype into v_type
        from pg_catalog.pg_attribute
       where attrelid = p_relation and attname = v_field and attnum > 0 and not attisdropped;
      if not found then
        raise exception '%: field_name "%" is not a column of %', v_where, v_field, p_relation
          using errcode = 'undefined_column';
      end if;
    end if;
    if v_operator in ('in', 'not_in') and jsonb_typeof(v_condition -> 'value') is distinct from 'array' then
      raise exception '%: operator "%" needs "value" to be an array, got %', v_where, v_operator,
        coalesce(jsonb_typeof(v_condition -> 'value'), 'nothing')
        using errcode = 'invalid_parameter_value';
    end if;
    if v_operator in ('equals', 'not_equals', 'changed_to', 'greater_than', 'less_than',
                      'greater_or_equal', 'less_or_equal', 'contains')
       and not v_condition ? 'value' then
      raise exception '%: operator "%" needs a "value"', v_where, v_operator
        using errcode = 'invalid_parameter_value';
    end if;
    if v_operator = 'changed_from' and not v_condition ? 'previous_value' then
      raise exception '%: operator "changed_from" needs a "previous_value"', v_where
        using errcode = 'invalid_parameter_value';
    end if;
    if v_operator in ('changed_from', 'changed_to', 'changed')
       and p_trigger_type in ('on_create', 'on_delete', 'scheduled') then
      raise exception '%: operator "%" compares old and new values, so it only applies to on_update rules, not %',
        v_where, v_operator, p_trigger_type
        using errcode = 'invalid_parameter_value';
    end if;
    if v_operator in ('older_than', 'newer_than', 'within_next') then
      v_problem := workflow.time_interval_problem(v_condition -> 'value');
      if v_problem is not null then
        raise exception '%: operator "%" %', v_where, v_operator, v_problem
          using errcode = 'invalid_parameter_value',
                hint = 'Write "2 days", "36 hours", "1 hour 30 minutes", "P2D" or "PT36H".';
      end if;
      if v_type is not null
         and v_type not in ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype) then
        raise exception '%: operator "%" needs a date or timestamp column, and "%" is %',
          v_where, v_operator, v_field, format_type(v_type, null)
          using errcode = 'invalid_parameter_value';
      end if;
    end if;
    -- A value the column's type cannot hold is refused: at a tick it would fail the cast, and an
    -- event rule would never match (the daemon compares a number only with a number, a time only
    -- with a time).
    if v_type is not null
       and v_operator in ('equals', 'not_equals', 'greater_than', 'less_than', 'greater_or_equal',
                          'less_or_equal', 'in', 'not_in', 'changed_to', 'changed_from') then
      v_type_name := format_type(v_type, null);
      for v_value in
        select x from jsonb_array_elements(
          case when v_operator in ('in', 'not_in') then v_condition -> 'value'
               when v_operator = 'changed_from' then jsonb_build_array(v_condition -> 'previous_value')
               else jsonb_build_array(v_condition -> 'value') end) x
      loop
        continue when jsonb_typeof(v_value) = 'null';
        begin
          execute format('select %L::%s', case jsonb_typeof(v_value) when 'string' then v_value #>> '{}'
                                                                      else v_value::text end, v_type_name);
        exception when others then
          raise exception '%: value % is not a valid % for column "%"', v_where, v_value, v_type_name, v_field
            using errcode = 'invalid_parameter_value';
        end;
      end loop;
    end if;
    v_index := v_index + 1;
  end loop;
end
$$;

-- Entities are named by the bare table name (entities_name_key), so registering sales.orders beside
-- a registered demo_sales.orders failed with a bare unique violation that named neither table. It
-- still fails, with the same SQLSTATE (23505), now saying which table holds the name and what to do.
-- As in 000004 otherwise.
create or replace function workflow.register_entity(p_table text) returns uuid
language plpgsql as $$
declare
  v_relation regclass := to_regclass(p_table);
  v_schema text;
  v_name text;
  v_kind "char";
  v_id uuid;
  v_holder workflow.entities%rowtype;
begin
  if v_relation is null then
    raise exception 'register_entity: there is no table or view %', p_table
      using errcode = 'undefined_table',
            hint = 'Write the name as in SQL: sales.orders, or sales."Order Lines" for a name that needs quotes.';
  end if;
  select n.nspname, c.relname, c.relkind into v_schema, v_name, v_kind
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.oid = v_relation;
  select * into v_holder from workflow.entities where name = v_name;
  if found and v_holder.schema_name is not distinct from v_schema then
    raise exception 'register_entity: % is registered already (entity %)', v_relation, v_holder.id
      using errcode = 'unique_violation', constraint = 'entities_name_key', table = 'entities',
            schema = 'workflow',
            hint = case when v_holder.is_active then 'Nothing to do.'
                        else 'Its capture is switched off: update workflow.entities set is_active = true where id = '''
                             || v_holder.id || ''' switches it on.' end;
  elsif found then
    raise exception 'register_entity: the entity name "%" is taken by %.% (entity %); entity names are unique across schemas',
      v_name, quote_ident(v_holder.schema_name), quote_ident(v_holder.name), v_holder.id
      using errcode = 'unique_violation', constraint = 'entities_name_key', table = 'entities',
            schema = 'workflow',
            hint = format('Delete that entity (and its rules) first, or rename one of the tables: %I.%I and %I.%I cannot both be registered.',
                          v_holder.schema_name, v_holder.name, v_schema, v_name);
  end if;
  insert into workflow.entities (name, schema_name, entity_type_id)
  values (v_name, v_schema,
          (select id from workflow.entity_types where name = case when v_kind in ('v', 'm') then 'view' else 'table' end))
  returning id into v_id;
  return v_id;
end
$$;
