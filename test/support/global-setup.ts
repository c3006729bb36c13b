import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migrateDatabase } from '../../src/db/migrate.js';
import { startTestServer } from './test-server.js';
import { databaseUrl } from './urls.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    templateDatabase: string;
  }
}

/** Starts one server for the run and migrates a template database that each test file copies. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startTestServer();
  const template = `rulebook_template_${process.pid}`;
  const admin = new pg.Client({ connectionString: server.adminUrl });
  try {
    await admin.connect();
    await admin.query(`drop database if exists ${template}`);
    await admin.query(`create database ${template}`);
    await migrateDatabase(databaseUrl(server.adminUrl, template));
    await admin.query(`alter database ${template} is_template true`);
  } catch (error) {
    // A migration that fails must not leave the run's server behind (vitest calls no teardown).
    await admin.end().catch(() => undefined);
    await server.stop();
    throw error;
  }
  project.provide('pgAdminUrl', server.adminUrl);
  project.provide('templateDatabase', template);
  return async () => {
    await admin.query(`alter database ${template} is_template false`);
    await admin.query(`drop database if exists ${template} with (force)`);
    await admin.end();
    await server.stop();
  };
}
