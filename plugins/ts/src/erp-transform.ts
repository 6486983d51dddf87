// `erp-transform` in TypeScript: the Rust plugin's output (plugins/erp-transform), with
// types generated from wit/ (`npm run types`). Turns the default envelope of an order
// event into the flat line records an ERP import expects, and renames the event type.
//
// Configuration (all optional):
//   {"event_types": {"order.created": "ERP_ORDER_NEW", "order.updated": "ERP_ORDER_CHANGE"},
//    "header": "X-ERP-Record-Type", "include_payload": false}
//
// Events whose type is not in the map pass through unchanged. With `include_payload` the
// document also carries the source payload as `payload` (parsed and written again: the
// same JSON value, not always the same bytes, unlike the Rust plugin's verbatim copy).

import { log } from 'hookgate:plugin/host@0.1.0';
import type { Event, Header, OutgoingRequest } from 'hookgate:plugin/types@0.1.0';
import { NOT_IMPLEMENTED, type Json, bodyJson } from './support.js';

const DEFAULT_HEADER = 'X-ERP-Record-Type';
const BUILT_IN: Record<string, string> = {
  'order.created': 'ERP_ORDER_NEW',
  'order.updated': 'ERP_ORDER_CHANGE',
};

interface Settings {
  event_types?: Record<string, string>;
  header?: string;
  include_payload?: boolean;
}

function parseSettings(config: string): Settings {
  if (config.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(config);
  } catch (e) {
    throw `invalid config: ${String(e)}`;
  }
  if (parsed === null) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw 'invalid config: expected an object';
  return parsed as Settings;
}

/** Order and customer ids arrive as strings or numbers; the ERP wants text. */
function idText(id: Json | undefined): string | null {
  if (id === undefined || id === null) return null;
  return typeof id === 'string' ? id : JSON.stringify(id);
}

/** Rounds half away from zero, as Rust's `f64::round`. */
function round(x: number): number {
  return Math.sign(x) * Math.round(Math.abs(x));
}

const encoder = new TextEncoder();

export const hooks = {
  filter(_config: string, _e: Event): boolean {
    log('debug', NOT_IMPLEMENTED);
    return true;
  },

  transform(config: string, e: Event): Event {
    const settings = parseSettings(config);
    const recordType = (settings.event_types ?? BUILT_IN)[e.eventType];
    if (recordType === undefined) return e;
    const envelope = bodyJson(e.body) as { id?: Json; published_at?: Json; payload?: Json } | null;
    if (envelope === null || typeof envelope !== 'object' || typeof envelope.id !== 'string') {
      throw 'the body is not an envelope with an id';
    }
    const order = (envelope.payload ?? {}) as {
      order_id?: Json;
      customer?: { id?: Json } | null;
      currency?: Json;
      lines?: { sku?: Json; quantity?: Json; unit_price?: Json }[];
    };
    const orderNo = idText(order.order_id);
    const customerNo = order.customer ? idText(order.customer.id) : null;
    const currency = typeof order.currency === 'string' ? order.currency : null;
    const orderedAt = typeof envelope.published_at === 'string' ? envelope.published_at : '';
    const records = (order.lines ?? []).map((line, i) => {
      if (typeof line.sku !== 'string') throw `line ${i + 1}: missing field \`sku\``;
      const quantity = typeof line.quantity === 'number' ? line.quantity : 1;
      const unitPrice = typeof line.unit_price === 'number' ? line.unit_price : 0;
      return {
        order_no: orderNo,
        customer_no: customerNo,
        line_no: i + 1,
        sku: line.sku,
        quantity,
        unit_price: unitPrice,
        // Cents are what the ERP books; round away float noise.
        amount: round(quantity * unitPrice * 100) / 100,
        currency,
        ordered_at: orderedAt,
      };
    });
    const document: Record<string, Json> = {
      record_type: recordType,
      source_event_id: envelope.id,
      records,
    };
    if (settings.include_payload) document.payload = envelope.payload ?? null;
    const header = settings.header ?? DEFAULT_HEADER;
    const headers: Header[] = e.headers.filter((h) => h.name.toLowerCase() !== header.toLowerCase());
    headers.push({ name: header, value: recordType });
    return { ...e, eventType: recordType, headers, body: encoder.encode(JSON.stringify(document)) };
  },

  authenticate(_config: string, _req: OutgoingRequest): Header[] {
    log('debug', NOT_IMPLEMENTED);
    return [];
  },
};
