// `field-filter` in TypeScript: the Rust plugin's decisions (plugins/field-filter), with
// types generated from wit/ (`npm run types`). Keeps an event when its JSON body matches
// the configured conditions.
//
// Configuration (either form):
//   {"match": "all", "conditions": [{"path": "/payload/total", "op": "gte", "value": 100}]}
//   [{"path": "/payload/status", "op": "in", "value": ["paid", "shipped"]}]
//
// `path` is a JSON pointer into the body. Operators: eq, ne, gt, gte, lt, lte (numbers
// compare numerically, strings lexically), in, not_in, contains, prefix, exists, missing.
// A condition on a missing field is false, except missing, ne and not_in.

import { log } from 'hookgate:plugin/host@0.1.0';
import type { Event, Header, OutgoingRequest } from 'hookgate:plugin/types@0.1.0';
import { NOT_IMPLEMENTED, type Json, bodyJson, pointer, same } from './support.js';

const OPS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', 'not_in', 'contains', 'prefix', 'exists', 'missing'] as const;
type Op = (typeof OPS)[number];

interface Condition {
  path: string;
  op: Op;
  value: Json;
}

function parseSettings(config: string): { any: boolean; conditions: Condition[] } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(config);
  } catch (e) {
    throw `invalid config: ${String(e)}`;
  }
  if (Array.isArray(parsed)) {
    return { any: false, conditions: parsed.map(condition) };
  }
  if (parsed === null || typeof parsed !== 'object') {
    throw 'invalid config: expected a list of conditions or {"match", "conditions"}';
  }
  const full = parsed as { match?: unknown; conditions?: unknown };
  if (full.match !== undefined && full.match !== 'all' && full.match !== 'any') {
    throw `invalid config: unknown match ${JSON.stringify(full.match)}, expected all or any`;
  }
  if (!Array.isArray(full.conditions)) {
    throw 'invalid config: missing field `conditions`';
  }
  return { any: full.match === 'any', conditions: full.conditions.map(condition) };
}

function condition(raw: unknown): Condition {
  const c = raw as { path?: unknown; op?: unknown; value?: unknown } | null;
  if (c === null || typeof c !== 'object') throw 'invalid config: a condition must be an object';
  if (typeof c.path !== 'string') throw 'invalid config: missing field `path`';
  if (typeof c.op !== 'string' || !(OPS as readonly string[]).includes(c.op)) {
    throw `invalid config: unknown op ${JSON.stringify(c.op)}`;
  }
  return { path: c.path, op: c.op as Op, value: (c.value ?? null) as Json };
}

/** Numbers compare numerically, strings lexically; anything else does not compare. */
function order(a: Json, b: Json): number | undefined {
  if (typeof a === 'number' && typeof b === 'number') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  return undefined;
}

function holds(c: Condition, field: Json | undefined): boolean {
  if (field === undefined) return c.op === 'missing' || c.op === 'ne' || c.op === 'not_in';
  const ord = () => order(field, c.value);
  const inSet = () => Array.isArray(c.value) && c.value.some((v) => same(field, v));
  switch (c.op) {
    case 'exists':
      return true;
    case 'missing':
      return false;
    case 'eq':
      return same(field, c.value);
    case 'ne':
      return !same(field, c.value);
    case 'gt':
      return ord() === 1;
    case 'gte':
      return ord() === 1 || ord() === 0;
    case 'lt':
      return ord() === -1;
    case 'lte':
      return ord() === -1 || ord() === 0;
    case 'in':
      return inSet();
    case 'not_in':
      return !inSet();
    case 'contains':
      if (typeof field === 'string' && typeof c.value === 'string') return field.includes(c.value);
      if (Array.isArray(field)) return field.some((v) => same(v, c.value));
      return false;
    case 'prefix':
      return typeof field === 'string' && typeof c.value === 'string' && field.startsWith(c.value);
  }
}

export const hooks = {
  filter(config: string, e: Event): boolean {
    const { any, conditions } = parseSettings(config);
    const body = bodyJson(e.body);
    const results = conditions.map((c) => holds(c, pointer(body, c.path)));
    const keep = any ? results.some((r) => r) : results.every((r) => r);
    if (!keep) log('debug', `event ${e.id} dropped by field-filter`);
    return keep;
  },

  transform(_config: string, e: Event): Event {
    log('debug', NOT_IMPLEMENTED);
    return e;
  },

  authenticate(_config: string, _req: OutgoingRequest): Header[] {
    log('debug', NOT_IMPLEMENTED);
    return [];
  },
};
