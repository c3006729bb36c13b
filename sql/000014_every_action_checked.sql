-- Every action is checked when it is written (issue 10), and webhook secrets stay in the action.
--
-- Before, only create_alert configs were checked when a workflow.rule_actions row was written; a
-- webhook with an ftp:// URL, an e-mail to a user who does not exist or an update_field of a
-- column that is not there was stored and failed at every event. Now the INSERT or UPDATE fails,
-- with SQLSTATE 23503 (it names something that does not exist: a user, role, table, column or
-- entity) or 22023 (a bad value), and a message naming the rule (name and id), the action
-- (position, name, id and type) and the config key. Action types other than the six built-in ones
-- (a library user's own handlers) are not checked here.
--
-- Templates: the renderer is Handlebars, in the daemon (src/templating/render.ts). A trigger
-- cannot call it, so workflow.template_problem re-implements Handlebars' lexer and grammar in
-- PL/pgSQL, plus rulebook's own rules (a helper called with arguments must be one rulebook
-- registers; no partials, decorators or raw blocks). src/templating/template-check.ts is the
-- reference, and test/template-check.test.ts runs a corpus through both and asserts they agree.

-- The helpers of src/templating/helpers.ts (createTemplateEnvironment) and Handlebars' built-ins.
create function workflow.template_helpers() returns text[]
language sql immutable parallel safe as $$
  select array['blockHelperMissing', 'currency', 'default', 'each', 'eq', 'formatDate', 'gt', 'gte',
               'helperMissing', 'if', 'join', 'json', 'log', 'lookup', 'lowercase', 'lt', 'lte', 'ne',
               'round', 'truncate', 'unless', 'uppercase', 'with']
$$;

-- Parsing helpers below raise 22023 with the problem; template_problem turns that into its answer.

-- helperName: a path (ID (SEP ID)*), @data path, or a literal. Returns the index after it, the
-- name as Handlebars' path.original spells it, and whether it is a simple name (a helper's).
create function workflow.template_parse_name(
  p_kinds text[], p_texts text[], p_at int, out next int, out original text, out simple boolean
)
language plpgsql immutable as $$
declare
  v_i int := p_at;
  v_data boolean := false;
  v_segments int := 0;
  v_tail int := 0;
  v_part text;
begin
  if p_kinds[v_i] in ('STRING', 'NUMBER', 'BOOLEAN', 'UNDEFINED', 'NULL') then
    next := v_i + 1;
    original := p_texts[v_i];
    simple := false;
    return;
  end if;
  if p_kinds[v_i] = 'DATA' then
    v_data := true;
    v_i := v_i + 1;
  end if;
  if p_kinds[v_i] is distinct from 'ID' then
    raise exception 'expected a name%, found %',
      case when v_data then ' after @' else ' or a value' end, coalesce(p_texts[v_i], 'the end')
      using errcode = 'invalid_parameter_value';
  end if;
  original := case when v_data then '@' else '' end;
  loop
    v_part := p_texts[v_i];
    if v_part ~ '^\[.*\]$' then
      v_part := substr(v_part, 2, length(v_part) - 2);
      v_tail := v_tail + 1;
    elsif v_part in ('.', '..', 'this') then
      if v_tail > 0 then
        raise exception 'invalid path %: "%" may only start a path', original || v_part, v_part
          using errcode = 'invalid_parameter_value';
      end if;
    else
      v_tail := v_tail + 1;
    end if;
    original := original || v_part;
    v_segments := v_segments + 1;
    v_i := v_i + 1;
    exit when p_kinds[v_i] is distinct from 'SEP';
    if p_kinds[v_i + 1] is distinct from 'ID' then
      raise exception 'a name must follow "%" in %', p_texts[v_i], original
        using errcode = 'invalid_parameter_value';
    end if;
    original := original || p_texts[v_i];
    v_i := v_i + 1;
  end loop;
  next := v_i;
  simple := not v_data and v_segments = 1 and original !~ '^\.|this\y';
end
$$;

-- A call: helperName param* hash? [blockParams]; params are helperNames or (sub expressions).
create function workflow.template_parse_call(
  p_kinds text[], p_texts text[], p_at int, p_block_params boolean, out next int, out original text
)
language plpgsql immutable as $$
declare
  v_name record;
  v_i int;
  v_params int := 0;
  v_hash boolean := false;
  v_sub record;
begin
  select * into v_name from workflow.template_parse_name(p_kinds, p_texts, p_at);
  v_i := v_name.next;
  loop
    if p_kinds[v_i] = 'ID' and p_kinds[v_i + 1] = 'EQUALS' then
      v_hash := true;
      v_i := v_i + 2;
    elsif v_hash or p_kinds[v_i] is null
          or p_kinds[v_i] not in ('ID', 'DATA', 'STRING', 'NUMBER', 'BOOLEAN', 'UNDEFINED', 'NULL', 'OPEN_SEXPR') then
      exit;
    else
      v_params := v_params + 1;
    end if;
    if p_kinds[v_i] = 'OPEN_SEXPR' then
      select * into v_sub from workflow.template_parse_call(p_kinds, p_texts, v_i + 1, false);
      if p_kinds[v_sub.next] is distinct from 'CLOSE_SEXPR' then
        raise exception 'expected ) to close (%, found %', v_sub.original, coalesce(p_texts[v_sub.next], 'the end')
          using errcode = 'invalid_parameter_value';
      end if;
      v_i := v_sub.next + 1;
    else
      select s.next into v_i from workflow.template_parse_name(p_kinds, p_texts, v_i) s;
    end if;
  end loop;
  if p_block_params and p_kinds[v_i] = 'OPEN_BLOCK_PARAMS' then
    v_i := v_i + 1;
    if p_kinds[v_i] is distinct from 'ID' then
      raise exception 'block parameters "as |…|" need at least one name' using errcode = 'invalid_parameter_value';
    end if;
    while p_kinds[v_i] = 'ID' loop
      v_i := v_i + 1;
    end loop;
    if p_kinds[v_i] is distinct from 'CLOSE_BLOCK_PARAMS' then
      raise exception 'block parameters "as |…|" are not closed with |' using errcode = 'invalid_parameter_value';
    end if;
    v_i := v_i + 1;
  end if;
  -- With arguments, Handlebars calls a helper; one that is not registered fails every render.
  if (v_params > 0 or v_hash) and not (v_name.simple and v_name.original = any (workflow.template_helpers())) then
    raise exception 'unknown helper "%" (known: %)', v_name.original, array_to_string(workflow.template_helpers(), ', ')
      using errcode = 'invalid_parameter_value';
  end if;
  next := v_i;
  original := v_name.original;
end
$$;

-- Why a template does not compile, or null when it does. Handlebars' lexer (handlebars.l): text up
-- to an unescaped {{, then tokens up to the closing }}, each rule tried in Handlebars' order.
create function workflow.template_problem(p_source text) returns text
language plpgsql immutable parallel safe as $$
declare
  v_pos int := 1;
  v_at int;
  v_found int;
  v_rest text;
  v_match text[];
  v_kind text;
  v_text text;
  v_kinds text[];
  v_texts text[];
  v_open text;
  v_call record;
  v_name record;
  v_last int;
  v_stack_names text[] := '{}';
  v_stack_kinds text[] := '{}';
  v_stack_else int[] := '{}';
  v_depth int := 0;
  v_end int;
  v_literal boolean;
begin
  if p_source is null or strpos(p_source, '{{') = 0 then
    return null;
  end if;
  loop
    v_found := strpos(substr(p_source, v_pos), '{{');
    exit when v_found = 0;
    v_at := v_pos + v_found - 1;
    -- \{{ is a literal {{; \\{{ is a backslash and a mustache.
    if substr(p_source, v_pos, v_at - v_pos) ~ '(^|[^\\])\\$' then
      v_pos := v_at + 2;
      continue;
    end if;
    v_rest := substr(p_source, v_at);
    -- The statement's opening token.
    if v_rest ~ '^\{\{\{\{' then
      return format('raw blocks ({{{{…}}}}) are not supported, at character %s', v_at);
    elsif v_rest ~ '^\{\{~?#?>' then
      return format('partials ({{>…}}) are not supported, at character %s', v_at);
    elsif v_rest ~ '^\{\{~?#\*' or v_rest ~ '^\{\{~?\*' then
      return format('decorators ({{*…}}) are not supported, at character %s', v_at);
    elsif v_rest ~ '^\{\{~?!--' then
      v_end := strpos(substr(v_rest, strpos(v_rest, '!') + 1), '--}}');
      v_found := strpos(substr(v_rest, strpos(v_rest, '!') + 1), '--~}}');
      if v_end = 0 and v_found = 0 then
        return format('the comment {{!-- at character %s is never closed with --}}', v_at);
      end if;
      v_end := case when v_end = 0 then v_found + 5 when v_found = 0 then v_end + 4
                    else least(v_end + 4, v_found + 5) end;
      v_pos := v_at + strpos(v_rest, '!') + v_end - 1;
      continue;
    elsif v_rest ~ '^\{\{~?!' and strpos(v_rest, '}}') > 0 then
      v_pos := v_at + strpos(v_rest, '}}') + 1;
      continue;
    end if;
    v_match := regexp_match(v_rest, '^\{\{~?(?:(#)|(/)|(\^)[[:space:]]*~?\}\}|[[:space:]]*(else)[[:space:]]*~?\}\}|(\^)|[[:space:]]*(else)\y|(\{)|&)?');
    v_open := case
      when v_match[1] is not null then 'OPEN_BLOCK'
      when v_match[2] is not null then 'OPEN_ENDBLOCK'
      when v_match[3] is not null or v_match[4] is not null then 'INVERSE'
      when v_match[5] is not null then 'OPEN_INVERSE'
      when v_match[6] is not null then 'OPEN_INVERSE_CHAIN'
      when v_match[7] is not null then 'OPEN_UNESCAPED'
      else 'OPEN' end;
    v_pos := v_at + length((regexp_match(v_rest, '^\{\{~?(?:#|/|\^[[:space:]]*~?\}\}|[[:space:]]*else[[:space:]]*~?\}\}|\^|[[:space:]]*else\y|\{|&)?'))[1]);
    if v_open = 'INVERSE' then
      if v_depth = 0 then
        return format('{{else}} at character %s is outside any block', v_at);
      end if;
      if v_stack_else[v_depth] = 2 then
        return format('a second {{else}} at character %s in the block {{#%s}}', v_at, v_stack_names[v_depth]);
      end if;
      v_stack_else[v_depth] := 2;
      continue;
    end if;
    -- The statement's tokens, up to its closing }} or }}}.
    v_kinds := array[v_open];
    v_texts := array[substr(p_source, v_at, v_pos - v_at)];
    loop
      v_rest := substr(p_source, v_pos);
      v_kind := null;
      if v_rest = '' then
        return format('the {{ at character %s is never closed with }}', v_at);
      end if;
      v_match := regexp_match(v_rest, '^([[:space:]]+)');
      if v_match is not null then
        v_pos := v_pos + length(v_match[1]);
        continue;
      end if;
      if v_rest ~ '^\{\{' then
        return format('a {{ at character %s opens inside the {{…}} that starts at character %s', v_pos, v_at);
      elsif v_rest ~ '^\}\}\}\}' then
        return format('unexpected }}}} at character %s', v_pos);
      end if;
      v_match := regexp_match(v_rest, '^(\(|\)|=|\.\.|\.(?=[=~}[:space:]/.)|])|[/.]|\}~?\}\}|~?\}\}|"(?:\\"|[^"])*"|''(?:\\''|[^''])*''|@|(?:true|false|undefined|null|-?[0-9]+(?:\.[0-9]+)?)(?=[~}[:space:])])|as[[:space:]]+\||\||[^[:space:]!"#%&''()*+,./;<=>@\[\\\]^`{|}~]+(?=[=~}[:space:]/.)|])|\[(?:\\\]|[^\]])*\])');
      if v_match is null then
        return format('unexpected "%s" at character %s', left(v_rest, 1), v_pos);
      end if;
      v_text := v_match[1];
      -- Literals need what follows them to end them (LITERAL_LOOKAHEAD); else they are names.
      v_literal := substr(v_rest, length(v_text) + 1, 1) ~ '^[~}[:space:])]$';
      v_kind := case
        when v_text = '(' then 'OPEN_SEXPR'
        when v_text = ')' then 'CLOSE_SEXPR'
        when v_text = '=' then 'EQUALS'
        when v_text = '..' then 'ID'
        when v_text = '.' and v_rest ~ '^\.(?=[=~}[:space:]/.)|])' then 'ID'
        when v_text in ('/', '.') then 'SEP'
        when v_text ~ '^\}~?\}\}$' then 'CLOSE_UNESCAPED'
        when v_text ~ '^~?\}\}$' then 'CLOSE'
        when v_text ~ '^["'']' then 'STRING'
        when v_text = '@' then 'DATA'
        when v_literal and v_text in ('true', 'false') then 'BOOLEAN'
        when v_literal and v_text = 'undefined' then 'UNDEFINED'
        when v_literal and v_text = 'null' then 'NULL'
        when v_literal and v_text ~ '^-?[0-9]+(\.[0-9]+)?$' then 'NUMBER'
        when v_text ~ '^as[[:space:]]+\|$' then 'OPEN_BLOCK_PARAMS'
        when v_text = '|' then 'CLOSE_BLOCK_PARAMS'
        else 'ID' end;
      if v_kind = 'STRING' then
        v_text := substr(v_text, 2, length(v_text) - 2);
      end if;
      v_kinds := v_kinds || v_kind;
      v_texts := v_texts || v_text;
      v_pos := v_pos + length(v_match[1]);
      exit when v_kind in ('CLOSE', 'CLOSE_UNESCAPED');
    end loop;
    v_last := array_length(v_kinds, 1);
    begin
      if v_open = 'OPEN_ENDBLOCK' then
        select * into v_name from workflow.template_parse_name(v_kinds, v_texts, 2);
        v_call := null;
        if v_name.next <> v_last or v_kinds[v_last] <> 'CLOSE' then
          return format('{{/%s}} at character %s takes nothing but the block''s name', v_name.original, v_at);
        end if;
        if v_depth = 0 then
          return format('{{/%s}} at character %s closes no block', v_name.original, v_at);
        end if;
        if v_stack_names[v_depth] <> v_name.original then
          return format('{{/%s}} at character %s does not close {{#%s}}', v_name.original, v_at, v_stack_names[v_depth]);
        end if;
        v_depth := v_depth - 1;
        v_stack_names := v_stack_names[1:v_depth];
        v_stack_kinds := v_stack_kinds[1:v_depth];
        v_stack_else := v_stack_else[1:v_depth];
        continue;
      end if;
      select * into v_call from workflow.template_parse_call(
        v_kinds, v_texts, 2, v_open in ('OPEN_BLOCK', 'OPEN_INVERSE', 'OPEN_INVERSE_CHAIN'));
    exception when invalid_parameter_value then
      return format('%s, in the {{…}} at character %s', sqlerrm, v_at);
    end;
    if v_call.next <> v_last
       or v_kinds[v_last] <> (case when v_open = 'OPEN_UNESCAPED' then 'CLOSE_UNESCAPED' else 'CLOSE' end) then
      return format('unexpected %s in the {{…}} at character %s',
        coalesce(nullif(v_texts[v_call.next], ''), v_kinds[v_call.next]), v_at);
    end if;
    if v_open in ('OPEN_BLOCK', 'OPEN_INVERSE') then
      v_depth := v_depth + 1;
      v_stack_names := v_stack_names || v_call.original;
      v_stack_kinds := v_stack_kinds || v_open;
      v_stack_else := v_stack_else || 0;
    elsif v_open = 'OPEN_INVERSE_CHAIN' then
      if v_depth = 0 then
        return format('{{else %s}} at character %s is outside any block', v_call.original, v_at);
      end if;
      if v_stack_kinds[v_depth] = 'OPEN_INVERSE' or v_stack_else[v_depth] = 2 then
        return format('{{else %s}} at character %s cannot follow {{^%s}} or {{else}}', v_call.original, v_at, v_stack_names[v_depth]);
      end if;
      v_stack_else[v_depth] := 1;
    end if;
  end loop;
  if v_depth > 0 then
    return format('the block {{#%s}} is never closed with {{/%s}}', v_stack_names[v_depth], v_stack_names[v_depth]);
  end if;
  return null;
end
$$;

-- Every template string of a config compiles. Every string is rendered by some action except the
-- secret (and action_type, a name); one without {{ is plain text and always compiles.
create function workflow.check_config_templates(p_where text, p_type text, p_value jsonb, p_path text default null)
returns void
language plpgsql stable as $$
declare
  v_key text;
  v_item jsonb;
  v_index int := 0;
  v_problem text;
begin
  case jsonb_typeof(p_value)
    when 'string' then
      v_problem := workflow.template_problem(p_value #>> '{}');
      if v_problem is not null then
        raise exception '%: % config.% is a template that does not compile: %', p_where, p_type, p_path, v_problem
          using errcode = 'invalid_parameter_value';
      end if;
    when 'object' then
      for v_key, v_item in select key, value from jsonb_each(p_value) loop
        continue when p_path is null and v_key in ('secret', 'action_type');
        perform workflow.check_config_templates(p_where, p_type, v_item, coalesce(p_path || '.', '') || v_key);
      end loop;
    when 'array' then
      for v_item in select value from jsonb_array_elements(p_value) loop
        perform workflow.check_config_templates(p_where, p_type, v_item, format('%s[%s]', p_path, v_index));
        v_index := v_index + 1;
      end loop;
    else
      null;
  end case;
end
$$;

-- Small readers shared by the checks below; each raises 22023 naming the key.
create function workflow.config_string(p_where text, p_type text, p_config jsonb, p_key text, p_required boolean)
returns text
language plpgsql immutable as $$
begin
  if p_config -> p_key is null or jsonb_typeof(p_config -> p_key) = 'null' then
    if p_required then
      raise exception '%: % config.% is required and must be a non-empty string', p_where, p_type, p_key
        using errcode = 'invalid_parameter_value';
    end if;
    return null;
  end if;
  if jsonb_typeof(p_config -> p_key) <> 'string' or p_config ->> p_key = '' then
    raise exception '%: % config.% must be a non-empty string, got %', p_where, p_type, p_key, p_config -> p_key
      using errcode = 'invalid_parameter_value';
  end if;
  return p_config ->> p_key;
end
$$;

create function workflow.config_one_of(p_where text, p_type text, p_config jsonb, p_key text, p_allowed text[])
returns void
language plpgsql immutable as $$
begin
  if p_config -> p_key is not null and jsonb_typeof(p_config -> p_key) <> 'null'
     and not (jsonb_typeof(p_config -> p_key) = 'string' and p_config ->> p_key = any (p_allowed)) then
    raise exception '%: % config.% must be one of %, got %', p_where, p_type, p_key,
      array_to_string(p_allowed, ', '), p_config -> p_key
      using errcode = 'invalid_parameter_value';
  end if;
end
$$;

-- A relation named as in SQL (schema.table), or null when there is none or the name is not SQL.
create function workflow.sql_relation(p_name text) returns regclass
language plpgsql stable as $$
begin
  return to_regclass(p_name);
exception when invalid_name or syntax_error or feature_not_supported then
  return null;
end
$$;

-- The column's type, or 23503 naming the key when the relation has no such column.
create function workflow.config_column(p_where text, p_type text, p_relation regclass, p_column text, p_key text)
returns pg_catalog.pg_type
language plpgsql stable as $$
declare
  v_type pg_catalog.pg_type;
begin
  select t.* into v_type
    from pg_catalog.pg_attribute a join pg_catalog.pg_type t on t.oid = a.atttypid
   where a.attrelid = p_relation and a.attname = p_column and a.attnum > 0 and not a.attisdropped;
  if not found then
    raise exception '%: % config.% "%" is not a column of %', p_where, p_type, p_key, p_column, p_relation
      using errcode = 'foreign_key_violation';
  end if;
  return v_type;
end
$$;

-- A user or role id given literally must exist (23503); p_kinds says which it may be.
create function workflow.check_config_recipient(p_where text, p_type text, p_key text, p_id text, p_kinds text[])
returns void
language plpgsql stable as $$
begin
  if 'users' = any (p_kinds) and exists (select 1 from core.users where id = p_id::uuid) then
    return;
  end if;
  if 'roles' = any (p_kinds) and exists (select 1 from core.roles where id = p_id::uuid) then
    return;
  end if;
  if 'roles' <> all (p_kinds) and exists (select 1 from core.roles where id = p_id::uuid) then
    raise exception '%: % config.% is role %, but it must be a user', p_where, p_type, p_key, p_id
      using errcode = 'invalid_parameter_value';
  end if;
  raise exception '%: % config.% names % %, which does not exist in %', p_where, p_type, p_key,
    case when p_kinds = array['users'] then 'user' when p_kinds = array['roles'] then 'role' else 'user or role' end,
    p_id, case when p_kinds = array['users'] then 'core.users' when p_kinds = array['roles'] then 'core.roles'
               else 'core.users or core.roles' end
    using errcode = 'foreign_key_violation';
end
$$;

create function workflow.is_uuid_text(p_text text) returns boolean
language sql immutable parallel safe as $$
  select p_text ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
$$;

-- send_email (src/actions/send-email.ts): to and cc (addresses, user and role ids; templated),
-- reply_to (an address or a user id), subject, text and/or html.
create function workflow.check_send_email_config(p_where text, p_config jsonb, p_complete boolean)
returns void
language plpgsql stable as $$
declare
  v_key text;
  v_value jsonb;
  v_item jsonb;
  v_index int;
  v_text text;
  v_entries int := 0;
begin
  foreach v_key in array array['to', 'cc'] loop
    v_value := p_config -> v_key;
    continue when v_value is null or jsonb_typeof(v_value) = 'null';
    if jsonb_typeof(v_value) = 'string' then
      v_value := jsonb_build_array(v_value);
    elsif jsonb_typeof(v_value) <> 'array' or exists (select 1 from jsonb_array_elements(v_value) e where jsonb_typeof(e) <> 'string') then
      raise exception '%: send_email config.% must be a string or an array of strings', p_where, v_key
        using errcode = 'invalid_parameter_value';
    end if;
    v_index := 0;
    for v_item in select value from jsonb_array_elements(v_value) loop
      v_text := btrim(v_item #>> '{}');
      if strpos(v_text, '{{') = 0 then
        if workflow.is_uuid_text(v_text) then
          perform workflow.check_config_recipient(p_where, 'send_email', format('%s[%s]', v_key, v_index), v_text, array['users', 'roles']);
        elsif v_text !~ '^[^[:space:]@<>(),;:"[\]\\]+@[^[:space:]@<>(),;:"[\]\\]+$' then
          raise exception '%: send_email config.%[%] is %, which is neither an e-mail address nor a user or role id',
            p_where, v_key, v_index, v_item
            using errcode = 'invalid_parameter_value';
        end if;
      end if;
      if v_key = 'to' then
        v_entries := v_entries + 1;
      end if;
      v_index := v_index + 1;
    end loop;
  end loop;
  v_text := btrim(workflow.config_string(p_where, 'send_email', p_config, 'reply_to', false));
  if v_text is not null and strpos(v_text, '{{') = 0 then
    if workflow.is_uuid_text(v_text) then
      perform workflow.check_config_recipient(p_where, 'send_email', 'reply_to', v_text, array['users']);
    elsif v_text !~ '^[^[:space:]@<>(),;:"[\]\\]+@[^[:space:]@<>(),;:"[\]\\]+$' then
      raise exception '%: send_email config.reply_to is "%", which is neither an e-mail address nor a user id', p_where, v_text
        using errcode = 'invalid_parameter_value';
    end if;
  end if;
  perform workflow.config_string(p_where, 'send_email', p_config, 'subject', p_complete);
  perform workflow.config_string(p_where, 'send_email', p_config, 'text', false);
  perform workflow.config_string(p_where, 'send_email', p_config, 'html', false);
  if p_complete then
    if v_entries = 0 then
      raise exception '%: send_email config.to needs at least one recipient', p_where
        using errcode = 'invalid_parameter_value';
    end if;
    if not (p_config ? 'text' or p_config ? 'html') then
      raise exception '%: send_email config needs text, html or both', p_where
        using errcode = 'invalid_parameter_value';
    end if;
  end if;
end
$$;

-- send_notification (src/actions/send-notification.ts).
create function workflow.check_send_notification_config(p_where text, p_config jsonb, p_complete boolean)
returns void
language plpgsql stable as $$
declare
  v_kind text;
  v_value jsonb;
  v_item jsonb;
  v_index int;
  v_count int := 0;
begin
  v_value := p_config -> 'recipients';
  if v_value is not null and jsonb_typeof(v_value) <> 'null' and jsonb_typeof(v_value) <> 'object' then
    raise exception '%: send_notification config.recipients must be an object such as {"users": [...], "roles": [...]}', p_where
      using errcode = 'invalid_parameter_value';
  end if;
  foreach v_kind in array array['users', 'roles'] loop
    v_value := p_config -> 'recipients' -> v_kind;
    continue when v_value is null or jsonb_typeof(v_value) = 'null';
    if jsonb_typeof(v_value) <> 'array' then
      raise exception '%: send_notification config.recipients.% must be an array of uuids', p_where, v_kind
        using errcode = 'invalid_parameter_value';
    end if;
    v_index := 0;
    for v_item in select value from jsonb_array_elements(v_value) loop
      if jsonb_typeof(v_item) <> 'string' or not workflow.is_uuid_text(v_item #>> '{}') then
        raise exception '%: send_notification config.recipients.%[%] is %, which is not a uuid', p_where, v_kind, v_index, v_item
          using errcode = 'invalid_parameter_value';
      end if;
      perform workflow.check_config_recipient(p_where, 'send_notification',
        format('recipients.%s[%s]', v_kind, v_index), v_item #>> '{}', array[v_kind]);
      v_index := v_index + 1;
      v_count := v_count + 1;
    end loop;
  end loop;
  v_value := p_config -> 'channels';
  if v_value is not null and jsonb_typeof(v_value) <> 'null' then
    if jsonb_typeof(v_value) <> 'array' or jsonb_array_length(v_value) = 0 then
      raise exception '%: send_notification config.channels must be a non-empty array of email, in_app, sms, push', p_where
        using errcode = 'invalid_parameter_value';
    end if;
    for v_item in select value from jsonb_array_elements(v_value) loop
      if jsonb_typeof(v_item) <> 'string' or (v_item #>> '{}') not in ('email', 'in_app', 'sms', 'push') then
        raise exception '%: send_notification config.channels has %, which is not a channel (known: email, in_app, sms, push)', p_where, v_item
          using errcode = 'invalid_parameter_value';
      end if;
    end loop;
  end if;
  perform workflow.config_string(p_where, 'send_notification', p_config, 'title', p_complete);
  perform workflow.config_string(p_where, 'send_notification', p_config, 'body', false);
  perform workflow.config_one_of(p_where, 'send_notification', p_config, 'priority', array['low', 'medium', 'high', 'critical']);
  if p_complete and v_count = 0 then
    raise exception '%: send_notification config.recipients needs at least one user or role', p_where
      using errcode = 'invalid_parameter_value';
  end if;
end
$$;

-- webhook (src/actions/webhook.ts): a POST to url, with headers, timeout_ms and secret.
create function workflow.check_webhook_config(p_where text, p_config jsonb, p_complete boolean)
returns void
language plpgsql stable as $$
declare
  v_url text;
  v_value jsonb;
  v_name text;
  v_header jsonb;
begin
  v_url := workflow.config_string(p_where, 'webhook', p_config, 'url', p_complete);
  if v_url is not null then
    if strpos(v_url, '{{') > 0 then
      -- Row data may fill in the path and query, never the scheme, host or port.
      if left(v_url, strpos(v_url, '{{') - 1) !~* '^[[:space:]]*https?://[^/?#\\{}]+[/?#]' then
        raise exception '%: webhook config.url "%" must spell out its scheme, host and port before any {{…}} (for example https://hooks.example.com/orders/{{id}})',
          p_where, v_url
          using errcode = 'invalid_parameter_value';
      end if;
    elsif v_url !~* '^[[:space:]]*https?://[^/?#[:space:]]+([/?#][^[:space:]]*)?[[:space:]]*$' then
      raise exception '%: webhook config.url must be an http:// or https:// URL, got "%"', p_where, v_url
        using errcode = 'invalid_parameter_value';
    end if;
  end if;
  v_value := p_config -> 'method';
  if v_value is not null and jsonb_typeof(v_value) <> 'null' and upper(v_value #>> '{}') is distinct from 'POST' then
    raise exception '%: webhook config.method must be POST (webhooks are POSTed), got %', p_where, v_value
      using errcode = 'invalid_parameter_value';
  end if;
  v_value := p_config -> 'timeout_ms';
  if v_value is not null and jsonb_typeof(v_value) <> 'null'
     and not (jsonb_typeof(v_value) = 'number' and (v_value #>> '{}')::numeric between 1 and 120000
              and (v_value #>> '{}')::numeric = trunc((v_value #>> '{}')::numeric)) then
    raise exception '%: webhook config.timeout_ms must be a whole number of milliseconds from 1 to 120000, got %', p_where, v_value
      using errcode = 'invalid_parameter_value';
  end if;
  perform workflow.config_string(p_where, 'webhook', p_config, 'secret', false);
  v_value := p_config -> 'headers';
  if v_value is not null and jsonb_typeof(v_value) <> 'null' then
    if jsonb_typeof(v_value) <> 'object' then
      raise exception '%: webhook config.headers must be a JSON object of header names and values', p_where
        using errcode = 'invalid_parameter_value';
    end if;
    for v_name, v_header in select key, value from jsonb_each(v_value) loop
      if v_name !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$' then
        raise exception '%: webhook config.headers has "%", which is not a header name', p_where, v_name
          using errcode = 'invalid_parameter_value';
      end if;
      if lower(v_name) in ('content-type', 'content-length', 'host', 'idempotency-key', 'transfer-encoding', 'connection',
                           'keep-alive', 'te', 'trailer', 'upgrade', 'expect', 'proxy-connection')
         or lower(v_name) like 'x-rulebook-%' then
        raise exception '%: webhook config.headers.% is set by rulebook and cannot be given', p_where, v_name
          using errcode = 'invalid_parameter_value';
      end if;
      if jsonb_typeof(v_header) not in ('string', 'number', 'boolean') then
        raise exception '%: webhook config.headers.% must be a string', p_where, v_name
          using errcode = 'invalid_parameter_value';
      end if;
      if strpos(v_header #>> '{}', '{{') = 0 and (v_header #>> '{}') ~ '[^\t\u0020-\u007e\u0080-\u00ff]' then
        raise exception '%: webhook config.headers.% may hold only Latin-1 characters and no line breaks', p_where, v_name
          using errcode = 'invalid_parameter_value';
      end if;
    end loop;
  end if;
end
$$;

-- A registered entity named "schema.name" or by its bare name, as src/actions/relation-catalog.ts
-- findEntity looks it up.
create function workflow.find_entity(p_name text) returns workflow.entities
language sql stable as $$
  select e.* from workflow.entities e
   where e.name = case when strpos(p_name, '.') > 0 then substr(p_name, strpos(p_name, '.') + 1) else p_name end
     and (strpos(p_name, '.') = 0 or coalesce(e.schema_name, 'public') = split_part(p_name, '.', 1))
   limit 1
$$;

-- update_field (src/actions/update-field.ts). p_relation: the rule's own table, or null.
create function workflow.check_update_field_config(p_where text, p_config jsonb, p_complete boolean, p_relation regclass)
returns void
language plpgsql stable as $$
declare
  v_field text;
  v_target text;
  v_entity workflow.entities;
  v_relation regclass := p_relation;
  v_type pg_catalog.pg_type;
  v_type_sql text;
  v_value jsonb;
  v_item jsonb;
  v_index int := 0;
begin
  v_field := workflow.config_string(p_where, 'update_field', p_config, 'field', p_complete);
  if p_complete and not p_config ? 'value' then
    raise exception '%: update_field config.value is required (null clears the field)', p_where
      using errcode = 'invalid_parameter_value';
  end if;
  v_target := workflow.config_string(p_where, 'update_field', p_config, 'target_entity', false);
  if v_target is not null then
    v_entity := workflow.find_entity(v_target);
    if v_entity.id is null then
      raise exception '%: update_field config.target_entity "%" is not a registered entity', p_where, v_target
        using errcode = 'foreign_key_violation',
              hint = format('Register it with select workflow.register_entity(%L).', v_target);
    end if;
    v_relation := workflow.entity_relation(v_entity.schema_name, v_entity.name);
    if v_relation is null then
      raise exception '%: update_field config.target_entity "%" names no existing table or view', p_where, v_target
        using errcode = 'foreign_key_violation';
    end if;
    if (select relkind from pg_catalog.pg_class where oid = v_relation) not in ('r', 'p', 'v', 'f') then
      raise exception '%: update_field config.target_entity "%" is not a table or view that can be updated', p_where, v_target
        using errcode = 'invalid_parameter_value';
    end if;
    if p_complete and v_relation is distinct from p_relation and not p_config ? 'where' then
      raise exception '%: update_field config.where is required with config.target_entity', p_where
        using errcode = 'invalid_parameter_value';
    end if;
  end if;
  if v_relation is null then
    return;
  end if;
  if v_field is not null then
    v_type := workflow.config_column(p_where, 'update_field', v_relation, v_field, 'field');
    v_value := p_config -> 'value';
    -- A literal value must be one the column takes; a template is checked for compiling only.
    if v_value is not null and jsonb_typeof(v_value) <> 'null' and v_type.typname not in ('json', 'jsonb')
       and strpos(v_value::text, '{{') = 0 then
      select format_type(a.atttypid, a.atttypmod) into v_type_sql from pg_catalog.pg_attribute a
       where a.attrelid = v_relation and a.attname = v_field;
      begin
        execute format('select %L::%s', case when jsonb_typeof(v_value) = 'string' then v_value #>> '{}' else v_value::text end, v_type_sql);
      exception when data_exception or integrity_constraint_violation then
        raise exception '%: update_field config.value % is not a valid % for %.%: %', p_where, v_value, v_type_sql,
          v_relation, v_field, sqlerrm
          using errcode = 'invalid_parameter_value';
      end;
    end if;
  end if;
  v_value := p_config -> 'where';
  if v_value is not null and jsonb_typeof(v_value) <> 'null' then
    if jsonb_typeof(v_value) <> 'array' or jsonb_array_length(v_value) = 0 then
      raise exception '%: update_field config.where must be a non-empty array of conditions', p_where
        using errcode = 'invalid_parameter_value';
    end if;
    for v_item in select value from jsonb_array_elements(v_value) loop
      if jsonb_typeof(v_item) <> 'object' or jsonb_typeof(v_item -> 'field_name') is distinct from 'string' then
        raise exception '%: update_field config.where[%] must be an object with a field_name', p_where, v_index
          using errcode = 'invalid_parameter_value';
      end if;
      perform workflow.config_column(p_where, 'update_field', v_relation, v_item ->> 'field_name', format('where[%s].field_name', v_index));
      if jsonb_typeof(v_item -> 'operator') is distinct from 'string' or (v_item ->> 'operator') not in
         ('equals', 'not_equals', 'greater_than', 'less_than', 'contains', 'is_null', 'is_not_null', 'in') then
        raise exception '%: update_field config.where[%].operator % is not one of equals, not_equals, greater_than, less_than, contains, is_null, is_not_null, in',
          p_where, v_index, coalesce((v_item -> 'operator')::text, 'missing')
          using errcode = 'invalid_parameter_value';
      end if;
      if (v_item ->> 'operator') not in ('is_null', 'is_not_null') and not v_item ? 'value' then
        raise exception '%: update_field config.where[%]: operator "%" needs a "value"', p_where, v_index, v_item ->> 'operator'
          using errcode = 'invalid_parameter_value';
      end if;
      v_index := v_index + 1;
    end loop;
  end if;
end
$$;

-- allocate_inventory (src/actions/allocation/config.ts and inventory.ts).
create function workflow.check_allocate_inventory_config(p_where text, p_config jsonb, p_complete boolean, p_relation regclass)
returns void
language plpgsql stable as $$
declare
  c constant text := 'allocate_inventory';
  v_inventory jsonb := p_config -> 'inventory';
  v_columns jsonb;
  v_request jsonb := p_config -> 'request';
  v_table text;
  v_relation regclass;
  v_key text;
  v_value jsonb;
  v_type pg_catalog.pg_type;
  v_strategy text := coalesce(p_config ->> 'strategy', 'fifo');
begin
  perform workflow.config_one_of(p_where, c, p_config, 'strategy', array['fifo', 'lifo', 'nearest_expiry', 'lowest_cost']);
  perform workflow.config_one_of(p_where, c, p_config, 'mode', array['allocate', 'reserve']);
  v_value := p_config -> 'reservation_hours';
  if v_value is not null and jsonb_typeof(v_value) <> 'null'
     and not (jsonb_typeof(v_value) = 'number' and (v_value #>> '{}')::numeric > 0) then
    raise exception '%: allocate_inventory config.reservation_hours must be a positive number, got %', p_where, v_value
      using errcode = 'invalid_parameter_value';
  end if;
  v_value := p_config -> 'allow_partial';
  if v_value is not null and jsonb_typeof(v_value) not in ('null', 'boolean') then
    raise exception '%: allocate_inventory config.allow_partial must be true or false, got %', p_where, v_value
      using errcode = 'invalid_parameter_value';
  end if;

  if v_inventory is not null and jsonb_typeof(v_inventory) <> 'object' then
    raise exception '%: allocate_inventory config.inventory must be a JSON object', p_where
      using errcode = 'invalid_parameter_value';
  end if;
  if p_complete and v_inventory is null then
    raise exception '%: allocate_inventory config.inventory is required: {"table": ..., "columns": {...}}', p_where
      using errcode = 'invalid_parameter_value';
  end if;
  if v_inventory is not null then
    v_table := workflow.config_string(p_where, c, v_inventory, 'table', p_complete);
    v_columns := v_inventory -> 'columns';
    if (v_columns is null and p_complete) or (v_columns is not null and jsonb_typeof(v_columns) <> 'object') then
      raise exception '%: allocate_inventory config.inventory.columns must be a JSON object naming product, on_hand and reserved', p_where
        using errcode = 'invalid_parameter_value';
    end if;
    for v_key in select k from jsonb_object_keys(coalesce(v_columns, '{}')) k loop
      if v_key not in ('product', 'on_hand', 'reserved', 'allocated', 'location', 'received', 'expiry', 'unit_cost', 'lot') then
        raise exception '%: allocate_inventory config.inventory.columns has an unknown key "%" (known: product, on_hand, reserved, allocated, location, received, expiry, unit_cost, lot)',
          p_where, v_key
          using errcode = 'invalid_parameter_value';
      end if;
      perform workflow.config_string(p_where, c, v_columns, v_key, false);
    end loop;
    if p_complete then
      foreach v_key in array array['product', 'on_hand', 'reserved'] loop
        perform workflow.config_string(p_where, c, v_columns, v_key, true);
      end loop;
      v_key := case v_strategy when 'nearest_expiry' then 'expiry' when 'lowest_cost' then 'unit_cost' else 'received' end;
      if not v_columns ? v_key then
        raise exception '%: allocate_inventory strategy "%" needs config.inventory.columns.%', p_where, v_strategy, v_key
          using errcode = 'invalid_parameter_value';
      end if;
    end if;
    if v_table is not null then
      v_relation := workflow.sql_relation(v_table);
      if v_relation is null then
        raise exception '%: allocate_inventory config.inventory.table "%" is not an existing table (write it as in SQL: schema.table)', p_where, v_table
          using errcode = 'foreign_key_violation';
      end if;
      if (select relkind from pg_catalog.pg_class where oid = v_relation) not in ('r', 'p') then
        raise exception '%: allocate_inventory config.inventory.table "%" is not a table', p_where, v_table
          using errcode = 'invalid_parameter_value';
      end if;
      if not exists (select 1 from pg_catalog.pg_index where indrelid = v_relation and indisprimary) then
        raise exception '%: allocate_inventory config.inventory.table %: has no primary key; allocations name lots by it', p_where, v_relation
          using errcode = 'invalid_parameter_value';
      end if;
      for v_key, v_value in select key, value from jsonb_each(coalesce(v_columns, '{}')) loop
        v_type := workflow.config_column(p_where, c, v_relation, v_value #>> '{}', 'inventory.columns.' || v_key);
        if v_key in ('on_hand', 'reserved', 'allocated', 'unit_cost') and v_type.typcategory <> 'N' then
          raise exception '%: allocate_inventory config.inventory.columns.% "%" must be a number, but it is %',
            p_where, v_key, v_value #>> '{}', format_type(v_type.oid, null)
            using errcode = 'invalid_parameter_value';
        end if;
        if v_key in ('received', 'expiry') and v_type.typcategory <> 'D' then
          raise exception '%: allocate_inventory config.inventory.columns.% "%" must be a date or timestamp, but it is %',
            p_where, v_key, v_value #>> '{}', format_type(v_type.oid, null)
            using errcode = 'invalid_parameter_value';
        end if;
      end loop;
    end if;
  end if;

  if v_request is not null and jsonb_typeof(v_request) <> 'object' then
    raise exception '%: allocate_inventory config.request must be a JSON object', p_where
      using errcode = 'invalid_parameter_value';
  end if;
  if v_request ? 'lines_table' then
    v_table := workflow.config_string(p_where, c, v_request, 'lines_table', true);
    if jsonb_typeof(v_request -> 'match') is distinct from 'object' or v_request -> 'match' = '{}' then
      raise exception '%: allocate_inventory config.request.match must name at least one column of the lines table', p_where
        using errcode = 'invalid_parameter_value';
    end if;
    v_relation := workflow.sql_relation(v_table);
    if v_relation is null then
      raise exception '%: allocate_inventory config.request.lines_table "%" is not an existing table or view', p_where, v_table
        using errcode = 'foreign_key_violation';
    end if;
    perform workflow.config_column(p_where, c, v_relation, workflow.config_string(p_where, c, v_request, 'product_column', true), 'request.product_column');
    v_type := workflow.config_column(p_where, c, v_relation, workflow.config_string(p_where, c, v_request, 'quantity_column', true), 'request.quantity_column');
    if v_type.typcategory <> 'N' then
      raise exception '%: allocate_inventory config.request.quantity_column "%" must be a number, but it is %',
        p_where, v_request ->> 'quantity_column', format_type(v_type.oid, null)
        using errcode = 'invalid_parameter_value';
    end if;
    for v_key in select k from jsonb_object_keys(v_request -> 'match') k loop
      perform workflow.config_column(p_where, c, v_relation, v_key, 'request.match.' || v_key);
    end loop;
  elsif v_request ? 'product_field' then
    foreach v_key in array array['product_field', 'quantity_field'] loop
      perform workflow.config_string(p_where, c, v_request, v_key, true);
      if p_relation is not null then
        perform workflow.config_column(p_where, c, p_relation, v_request ->> v_key, 'request.' || v_key);
      end if;
    end loop;
  elsif p_complete then
    raise exception '%: allocate_inventory config.request needs product_field and quantity_field (the triggering row) or lines_table, match, product_column and quantity_column (line items)', p_where
      using errcode = 'invalid_parameter_value';
  end if;
end
$$;

-- Checks a config of any built-in action type; other types (a library user's own handlers) pass.
create function workflow.check_action_config(p_where text, p_type text, p_config jsonb, p_complete boolean, p_relation regclass)
returns void
language plpgsql stable as $$
begin
  case p_type
    when 'create_alert' then
      perform workflow.check_create_alert_config(p_where, p_config, p_complete);
    when 'send_email' then
      perform workflow.check_send_email_config(p_where, p_config, p_complete);
    when 'send_notification' then
      perform workflow.check_send_notification_config(p_where, p_config, p_complete);
    when 'webhook' then
      perform workflow.check_webhook_config(p_where, p_config, p_complete);
    when 'update_field' then
      perform workflow.check_update_field_config(p_where, p_config, p_complete, p_relation);
    when 'allocate_inventory' then
      perform workflow.check_allocate_inventory_config(p_where, p_config, p_complete, p_relation);
    else
      return;
  end case;
  perform workflow.check_config_templates(p_where, p_type, p_config);
end
$$;

-- How messages name a rule action: the rule (name and id), the action's position, name, id and type.
create function workflow.rule_action_label(p_action workflow.rule_actions, p_type text) returns text
language sql stable as $$
  select format('rule "%s" (%s), action #%s "%s" (%s, %s)',
                coalesce(r.name, '?'), p_action.automation_rules_id, p_action.execution_order, p_action.name,
                p_action.id, coalesce(p_type, 'no action_type'))
    from (select 1) one
    left join workflow.automation_rules r on r.id = p_action.automation_rules_id
$$;

-- The table a rule watches, when there is one.
create function workflow.rule_relation(p_rule_id uuid) returns regclass
language sql stable as $$
  select workflow.entity_relation(e.schema_name, e.name)
    from workflow.automation_rules r join workflow.entities e on e.id = r.entity_id
   where r.id = p_rule_id
$$;

-- Every rule action, as the daemon will run it: the template's action_type wins over
-- action_config.action_type, and the config is the template's defaults merged with action_config.
-- p_template: the template as it will be (the action template trigger passes its NEW row).
create or replace function workflow.check_rule_action_config(p_action workflow.rule_actions) returns void
language plpgsql stable as $$
begin
  perform workflow.check_rule_action_with(p_action, null);
end
$$;

create function workflow.check_rule_action_with(p_action workflow.rule_actions, p_template workflow.action_templates)
returns void
language plpgsql stable as $$
declare
  v_template workflow.action_templates := p_template;
  v_type text;
  v_config jsonb;
begin
  if jsonb_typeof(p_action.action_config) is distinct from 'object' then
    raise exception '%: action_config must be a JSON object such as {"action_type": "..."}, got %',
      workflow.rule_action_label(p_action, null), coalesce(jsonb_typeof(p_action.action_config), 'SQL NULL')
      using errcode = 'invalid_parameter_value';
  end if;
  if p_action.template_id is not null then
    if v_template.id is null then
      select * into v_template from workflow.action_templates where id = p_action.template_id;
      if not found then
        return; -- the foreign key reports it
      end if;
    end if;
    v_type := coalesce(v_template.action_type, p_action.action_config ->> 'action_type');
    v_config := workflow.merge_action_config(v_template.default_config, p_action.action_config);
  else
    v_type := case when jsonb_typeof(p_action.action_config -> 'action_type') = 'string'
                   then p_action.action_config ->> 'action_type' end;
    v_config := p_action.action_config;
  end if;
  perform workflow.check_action_config(workflow.rule_action_label(p_action, v_type), v_type, v_config, true,
    workflow.rule_relation(p_action.automation_rules_id));
end
$$;

-- A template's defaults are checked as far as they go (its actions fill in the rest), and a change
-- re-checks every active action that uses it, naming the first one it would break.
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
  perform workflow.check_action_config(format('action template "%s" (%s)', new.name, new.id), new.action_type,
    new.default_config, false, null);
  if tg_op = 'UPDATE' then
    for v_action in
      select * from workflow.rule_actions where template_id = new.id and is_active is not false
       order by automation_rules_id, execution_order
    loop
      begin
        perform workflow.check_rule_action_with(v_action, new);
      exception when invalid_parameter_value or foreign_key_violation then
        declare
          v_state text;
          v_message text;
        begin
          get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
          raise exception 'action template "%" (%): this change would break %', new.name, new.id, v_message
            using errcode = v_state;
        end;
      end;
    end loop;
  end if;
  return new;
end
$$;

-- A rule's own checks (sql/000003 check_automation_rule), callable outside the trigger.
create function workflow.check_rule_definition(p_rule workflow.automation_rules) returns void
language plpgsql stable as $$
declare
  v_entity workflow.entities;
  v_trigger_type text;
  v_relation regclass;
begin
  select * into v_entity from workflow.entities where id = p_rule.entity_id;
  if not found then
    raise exception 'automation rule "%": its entity % does not exist', p_rule.name, p_rule.entity_id
      using errcode = 'foreign_key_violation';
  end if;
  select name into v_trigger_type from workflow.trigger_types where id = p_rule.trigger_type_id;
  v_relation := workflow.entity_relation(v_entity.schema_name, v_entity.name);
  if v_relation is null then
    raise exception 'automation rule "%": entity "%" names no existing table or view', p_rule.name,
      concat_ws('.', v_entity.schema_name, v_entity.name)
      using errcode = 'undefined_table';
  end if;
  perform workflow.check_trigger_conditions(p_rule.name, p_rule.trigger_conditions, v_relation, v_trigger_type);
  -- The schedule's own checks (000009, and those later migrations add), as its trigger runs them.
  if v_trigger_type = 'scheduled' then
    perform workflow.check_schedule(p_rule.name, p_rule.trigger_conditions);
  end if;
end
$$;

-- Every problem the checks would find today, without changing anything: for use after ALTER TABLE
-- (src/operations/validate-rules.ts; `rulebook rules validate`). Each check runs in its own
-- subtransaction, so one problem does not hide the next.
create function workflow.rule_problems()
returns table (rule_id uuid, rule_name text, action_id uuid, problem text)
language plpgsql stable as $$
declare
  v_rule workflow.automation_rules;
  v_action workflow.rule_actions;
begin
  for v_rule in select * from workflow.automation_rules order by name, id loop
    begin
      perform workflow.check_rule_definition(v_rule);
    exception when others then
      rule_id := v_rule.id; rule_name := v_rule.name; action_id := null; problem := sqlerrm;
      return next;
    end;
    for v_action in
      select * from workflow.rule_actions where automation_rules_id = v_rule.id order by execution_order, id
    loop
      begin
        perform workflow.check_rule_action_config(v_action);
      exception when others then
        rule_id := v_rule.id; rule_name := v_rule.name; action_id := v_action.id; problem := sqlerrm;
        return next;
      end;
    end loop;
  end loop;
end
$$;

-- Secrets: a webhook action's own secret is read from the action when the request is signed
-- (src/delivery/webhook-sender.ts), never copied into the payload. Payloads written before this
-- migration lose theirs and say that the action's secret signs them.
update workflow.notification_payloads
   set payload = (payload - 'secret') || '{"own_secret": true}'
 where payload ->> 'kind' = 'webhook' and payload ? 'secret';

select workflow.apply_privileges();
