-- Staff access: API tokens for people, and which in-app notifications each has read. Both are
-- rulebook's own tables beside the contract ones; no contract table gains a column.

-- A token is `rbk_` and 32 random bytes in base64url. Only its SHA-256 (hex) is kept, so a copy of
-- the database does not hand out working tokens; the secret is shown once, when it is created.
create table core.api_tokens (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references core.users (id) on delete cascade,
  name text,
  token_hash text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
  created_date timestamptz not null default now(),
  expires_at timestamptz,
  last_used_at timestamptz,
  revoked_at timestamptz
);

create index api_tokens_user_idx on core.api_tokens (user_id);

-- Read state of in_app deliveries. A delivery has one recipient, so one row per delivery.
create table workflow.notification_reads (
  delivery_id uuid primary key references workflow.notification_deliveries (id) on delete cascade,
  user_id uuid not null references core.users (id) on delete cascade,
  read_at timestamptz not null default now()
);

create index notification_reads_user_idx on workflow.notification_reads (user_id);

-- A person's in-app inbox, newest first.
create index notification_deliveries_in_app_idx
  on workflow.notification_deliveries (recipient_id, created_date desc, id desc)
  where channel = 'in_app';
