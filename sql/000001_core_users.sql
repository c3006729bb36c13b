-- rulebook resolves alert and notification recipients through core.users, core.roles and
-- core.user_roles. An application that already has these tables keeps them: every statement here
-- is "if not exists", and README.md lists the columns rulebook reads.
create schema if not exists core;

create table if not exists core.users (
  id uuid primary key default gen_random_uuid(),
  email text unique,
  name text,
  is_active boolean not null default true
);

create table if not exists core.roles (
  id uuid primary key default gen_random_uuid(),
  name text not null unique
);

create table if not exists core.user_roles (
  user_id uuid not null references core.users (id) on delete cascade,
  role_id uuid not null references core.roles (id) on delete cascade,
  primary key (user_id, role_id)
);

create index if not exists user_roles_role_idx on core.user_roles (role_id);
