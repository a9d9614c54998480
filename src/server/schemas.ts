/**
 * JSON schemas shared by the routes. They are the single contract: Fastify validates requests
 * and serialises responses with them, and @fastify/swagger builds /openapi.json from them.
 */

export const openAiErrorSchema = {
  type: 'object',
  description: "OpenAI's error envelope.",
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['message', 'type', 'param', 'code'],
      properties: {
        message: { type: 'string' },
        type: { type: 'string', description: 'invalid_request_error (4xx) or server_error (5xx).' },
        param: { type: 'string', nullable: true, description: 'The request field at fault.' },
        code: { type: 'string', nullable: true, description: 'Machine-readable reason, e.g. unsupported_value, invalid_api_key, overloaded.' },
      },
    },
  },
} as const;

export const detailErrorSchema = {
  type: 'object',
  description: 'FastAPI-style error, as the original service answered.',
  required: ['detail'],
  properties: { detail: { type: 'string' } },
} as const;

export const validationErrorSchema = {
  type: 'object',
  description: "FastAPI's validation error list (pydantic v2 items).",
  required: ['detail'],
  properties: {
    detail: {
      type: 'array',
      items: {
        type: 'object',
        required: ['type', 'loc', 'msg'],
        properties: {
          type: { type: 'string', description: 'missing, bool_parsing, value_error, ...' },
          loc: { type: 'array', items: { anyOf: [{ type: 'string' }, { type: 'integer' }] } },
          msg: { type: 'string' },
          input: { description: 'The rejected value (null when missing).' },
        },
      },
    },
  },
} as const;

export const plainText = { type: 'string' } as const;

/** Error responses in one style for the given status codes. */
export function errorResponses(style: 'openai' | 'original', codes: number[]): Record<number, unknown> {
  const out: Record<number, unknown> = {};
  for (const code of codes) {
    out[code] = style === 'openai' ? openAiErrorSchema : code === 422 ? validationErrorSchema : detailErrorSchema;
  }
  return out;
}

export const bearerSecurity = [{ bearerAuth: [] }];
