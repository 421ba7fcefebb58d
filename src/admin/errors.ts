import { InvalidInput } from '../nodes/mac.js';
import { NotFound } from '../nodes/select.js';
import { ImageError } from '../images/errors.js';

/** An answer other than 200 with a message for the client; `field` names the offending input. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export interface ErrorBody {
  error: string;
  field?: string;
}

/**
 * Map anything thrown by a handler to a status and JSON body. The service's InvalidInput
 * (the CLI's exit 2) is a 400 and NotFound a 404, so API and CLI report the same message.
 */
export function errorResponse(e: unknown, defaultField?: string): { status: number; body: ErrorBody } {
  if (e instanceof HttpError) return { status: e.status, body: withField(e.message, e.field) };
  if (e instanceof InvalidInput) return { status: 400, body: withField(e.message, e.field ?? defaultField) };
  if (e instanceof NotFound) return { status: 404, body: withField(e.message) };
  if (e instanceof ImageError) return { status: 400, body: withField(e.message, e.entry) };
  // body-parser's errors carry a status and a type.
  const be = e as { status?: number; type?: string; message?: string };
  if (be && typeof be === 'object' && be.type === 'entity.parse.failed') {
    return { status: 400, body: withField(`request body is not valid JSON: ${be.message ?? 'parse error'}`, 'body') };
  }
  if (be && typeof be === 'object' && be.type === 'entity.too.large') {
    return { status: 413, body: withField('request body too large', 'body') };
  }
  if (be && typeof be === 'object' && typeof be.status === 'number' && be.status >= 400 && be.status < 500) {
    return { status: be.status, body: withField(be.message ?? 'bad request', 'body') };
  }
  return { status: 500, body: { error: `internal error: ${e instanceof Error ? e.message : String(e)}` } };
}

function withField(error: string, field?: string): ErrorBody {
  return field ? { error, field } : { error };
}
