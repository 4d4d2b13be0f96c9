// client.mjs drives a peftonnx server with the official openai npm client
// and prints what it got as one JSON report on standard output, for
// serve/openai's TestOpenAINodeClient to check. It is configured by the
// environment: OPENAI_MODULE (the file URL of the package's index.mjs),
// PEFTONNX_URL (the server's /v1), PEFTONNX_API_KEY, and CLIENT_CONFIG
// (JSON: models, prompts, max_tokens, clients). It exits non-zero when a
// call fails that should not.
const { default: OpenAI } = await import(process.env.OPENAI_MODULE);
const cfg = JSON.parse(process.env.CLIENT_CONFIG);
const client = new OpenAI({ baseURL: process.env.PEFTONNX_URL, apiKey: process.env.PEFTONNX_API_KEY, maxRetries: 0 });

const report = { models: [], completions: {}, streams: {}, chat: null, chatStream: null, concurrent: [], errors: {} };

// models.list pages through /v1/models.
for await (const m of client.models.list()) {
  report.models.push({ id: m.id, parent: m.parent ?? null, hash: m.hash, kind: m.kind });
}

const params = (model, prompt) => ({ model, prompt, max_tokens: cfg.max_tokens, temperature: 0 });

for (const model of cfg.models) {
  const r = await client.completions.create(params(model, cfg.prompts[0]));
  report.completions[model] = { text: r.choices[0].text, finish: r.choices[0].finish_reason, usage: r.usage, object: r.object, model: r.model };

  const stream = await client.completions.create({ ...params(model, cfg.prompts[0]), stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  report.streams[model] = { text, finish, usage, chunks };
}

const messages = [{ role: 'user', content: cfg.prompts[0] }];
const chat = await client.chat.completions.create({ model: cfg.models[0], messages, max_tokens: cfg.max_tokens, temperature: 0 });
report.chat = { text: chat.choices[0].message.content, role: chat.choices[0].message.role, finish: chat.choices[0].finish_reason, usage: chat.usage };
const chatStream = await client.chat.completions.create({ model: cfg.models[0], messages, max_tokens: cfg.max_tokens, temperature: 0, stream: true });
let chatText = '', chatFinish = null;
for await (const chunk of chatStream) {
  for (const c of chunk.choices) {
    chatText += c.delta?.content ?? '';
    if (c.finish_reason) chatFinish = c.finish_reason;
  }
}
report.chatStream = { text: chatText, finish: chatFinish };

// Many clients at once, each on a model and a prompt of its own.
const jobs = [];
for (let i = 0; i < cfg.clients; i++) {
  const model = cfg.models[i % cfg.models.length];
  const p = Math.floor(i / cfg.models.length) % cfg.prompts.length;
  jobs.push(client.completions.create(params(model, cfg.prompts[p])).then(r => ({ model, prompt: p, text: r.choices[0].text, usage: r.usage })));
}
report.concurrent = await Promise.all(jobs);

// Errors come back as the client's APIError subclasses with our message.
async function expectError(name, call) {
  try {
    await call();
    report.errors[name] = { status: 0, message: 'no error' };
  } catch (e) {
    if (!(e instanceof OpenAI.APIError)) throw e;
    report.errors[name] = { status: e.status, message: e.error?.message ?? e.message, type: e.constructor.name };
  }
}
await expectError('unknown_model', () => client.completions.create(params('no-such-adapter', 'hi')));
await expectError('max_tokens', () => client.completions.create({ ...params(cfg.models[0], 'hi'), max_tokens: 1000000 }));
await expectError('wrong_type', () => client.completions.create({ ...params(cfg.models[0], 'hi'), temperature: 'hot' }));
await expectError('bad_key', () => new OpenAI({ baseURL: process.env.PEFTONNX_URL, apiKey: 'wrong', maxRetries: 0 }).models.list());

process.stdout.write(JSON.stringify(report));
