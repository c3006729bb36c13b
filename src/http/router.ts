import type http from 'node:http';
import { HttpError, sendError } from './respond.js';

export interface RequestContext {
  readonly request: http.IncomingMessage;
  readonly response: http.ServerResponse;
  readonly url: URL;
  /** The `:name` segments of the route, decoded. */
  readonly params: Readonly<Record<string, string>>;
}

export type Handler = (context: RequestContext) => Promise<void> | void;

interface Route {
  readonly method: string;
  readonly segments: readonly string[];
  /** Routes without parameters win over those with, so /api/alerts/mine is never an alert id. */
  readonly literal: boolean;
  readonly handler: Handler;
}

/** A small method-and-path router: `:name` segments are parameters, everything else is literal. */
export class Router {
  readonly #routes: Route[] = [];

  add(method: string, pattern: string, handler: Handler): this {
    const segments = pattern.split('/').slice(1);
    this.#routes.push({ method, segments, literal: !segments.some((s) => s.startsWith(':')), handler });
    return this;
  }

  get(pattern: string, handler: Handler): this {
    return this.add('GET', pattern, handler);
  }

  post(pattern: string, handler: Handler): this {
    return this.add('POST', pattern, handler);
  }

  /**
   * Answers the request if a route's path matches it (405 when only the method is wrong) and
   * returns true; returns false, having done nothing, when no path matches.
   */
  async handle(request: http.IncomingMessage, response: http.ServerResponse, url: URL): Promise<boolean> {
    let path: string[];
    try {
      path = url.pathname.split('/').slice(1).map(decodeURIComponent);
    } catch {
      return false;
    }
    let matches = this.#routes
      .map((route) => ({ route, params: match(route.segments, path) }))
      .filter((m): m is { route: Route; params: Record<string, string> } => m.params !== undefined);
    if (matches.some((m) => m.route.literal)) matches = matches.filter((m) => m.route.literal);
    if (matches.length === 0) return false;
    const method = request.method === 'HEAD' ? 'GET' : (request.method ?? 'GET');
    const found = matches.find((m) => m.route.method === method);
    try {
      if (!found) {
        const allowed = [...new Set(matches.map((m) => m.route.method))].join(', ');
        throw new HttpError(405, `${request.method} is not allowed on ${url.pathname}; use ${allowed}`, {
          allow: allowed,
        });
      }
      await found.route.handler({ request, response, url, params: found.params });
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      if (response.headersSent) response.end();
      else sendError(response, error);
    }
    return true;
  }
}

function match(segments: readonly string[], path: readonly string[]): Record<string, string> | undefined {
  if (segments.length !== path.length) return undefined;
  const params: Record<string, string> = {};
  for (const [index, segment] of segments.entries()) {
    const part = path[index]!;
    if (segment.startsWith(':')) {
      if (part === '') return undefined;
      params[segment.slice(1)] = part;
    } else if (segment !== part) {
      return undefined;
    }
  }
  return params;
}
