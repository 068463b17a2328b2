// arguments.test.mjs — tool-call arguments byte for byte through the real worker, for every
// family whose adapter parses the provider's JSON (Gemini, Ollama, Anthropic, Bedrock): the
// mock answers with a raw JSON-text arguments object holding an integer beyond int64, 0.1,
// 1e-7 and nested arrays (docs/contracts.md: tool_calls[].arguments may be a raw string,
// emitted verbatim in each format), and the official openai SDK must receive exactly that
// text — whole and streamed. The other way, the client's arguments string must reach the
// provider as the same bytes (the mock's recorded raw body), and a real like 0.7 stays 0.7.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { itest, deployment, lastRequest, MASTER_KEY, LITERAL_KEY } from './lib/harness.mjs';

const BEDROCK_MODEL = 'anthropic.claude-3-5-sonnet-20240620-v1:0';
// jansson alone rejects the whole answer for the big integer and prints 0.1 as
// 0.10000000000000001; JSON.parse + JSON.stringify would lose the integer's last digits.
const RAW = '{"x":0.1,"n":12345678901234567890,"e":1e-7,"m":[[1,2],[3,[4.5,-0.0]]],"s":"a \\"q\\" ü"}';
const messages = [{ role: 'user', content: 'Compute it.' }];
const tools = [{ type: 'function', function: { name: 'calc', description: 'Calculator',
  parameters: { type: 'object', properties: { x: { type: 'number' } } } } }];

const FAMILIES = {
  gemini: { params: (m) => ({ model: 'gemini/gemini-x', api_base: `${m.base}/v1beta`, api_key: LITERAL_KEY }),
    upstream: (raw) => `"args":${raw}` },
  ollama: { params: (m) => ({ model: 'ollama/llama3', api_base: m.base }),
    upstream: (raw) => `"arguments":${raw}` },
  anthropic: { params: (m) => ({ model: 'anthropic/claude-x', api_base: m.apiBase, api_key: 'os.environ/MOCK_KEY' }),
    upstream: (raw) => `"input":${raw}` },
  bedrock: { params: (m) => ({ model: `bedrock/${BEDROCK_MODEL}`, api_base: m.base, api_key: LITERAL_KEY,
    aws_region_name: 'us-east-1' }),
    upstream: (raw) => `"input":${raw}` },
};

async function setup(env, family) {
  const mock = await env.startMock(`args-${family}`);
  const cluster = await env.startCluster({
    model_list: [deployment('args', FAMILIES[family].params(mock))],
    router_settings: { num_retries: 0, timeout: 10 },
  });
  const client = new OpenAI({ baseURL: `${cluster.worker.base}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
  return { mock, client };
}

/** The streamed tool calls reassembled per index: [{id, name, args}]. */
async function collectCalls(stream) {
  const calls = [];
  let finish = null;
  for await (const ch of stream) {
    for (const c of ch.choices || []) {
      if (c.finish_reason) finish = c.finish_reason;
      for (const tc of c.delta?.tool_calls || []) {
        const slot = calls[tc.index] ??= { id: undefined, name: '', args: '' };
        if (tc.id) slot.id = tc.id;
        if (tc.function?.name) slot.name += tc.function.name;
        if (tc.function?.arguments) slot.args += tc.function.arguments;
      }
    }
  }
  return { calls, finish };
}

for (const family of Object.keys(FAMILIES)) {
  itest(`${family}: tool-call arguments reach the client and the provider byte for byte`, async (env, t) => {
    const { mock, client } = await setup(env, family);

    await t.test('answer, whole', async () => {
      await mock.faults({ tool_calls: [{ name: 'calc', arguments: RAW }, { name: 'calc', arguments: '{"k":[0.7,[98765432109876543210]]}' }] });
      const data = await client.chat.completions.create({ model: 'args', messages, tools });
      assert.equal(data.choices[0].finish_reason, 'tool_calls');
      const got = data.choices[0].message.tool_calls.map((tc) => tc.function.arguments);
      assert.deepEqual(got, [RAW, '{"k":[0.7,[98765432109876543210]]}'], 'arguments are the provider\'s exact text');
    });

    await t.test('answer, streamed', async () => {
      await mock.faults({ tool_calls: [{ name: 'calc', arguments: RAW }] });
      const { calls, finish } = await collectCalls(await client.chat.completions.create({ model: 'args', messages, tools, stream: true }));
      assert.equal(finish, 'tool_calls');
      assert.equal(calls.length, 1);
      assert.equal(calls[0].name, 'calc');
      assert.equal(calls[0].args, RAW, 'streamed arguments reassemble to the provider\'s exact text');
    });

    await t.test('request: the client\'s arguments string goes upstream as its own bytes', async () => {
      const spaced = ` ${RAW.replace(',"e"', ', "e"')}\n`; // whitespace inside is kept, around is not
      const history = [
        ...messages,
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_a1', type: 'function', function: { name: 'calc', arguments: spaced } }] },
        { role: 'tool', tool_call_id: 'call_a1', content: '42' },
      ];
      const data = await client.chat.completions.create({ model: 'args', messages: history, tools, temperature: 0.7 });
      assert.equal(data.choices[0].message.role, 'assistant');
      const lr = lastRequest(await mock.stats());
      assert.equal(lr.raw.format, family);
      const body = lr.raw.body;
      assert.equal(typeof body, 'string', 'the mock recorded the raw body');
      assert.ok(body.includes(FAMILIES[family].upstream(spaced.trim())),
        `upstream body carries the arguments verbatim: ${body}`);
      assert.ok(body.includes('"temperature":0.7'), `0.7 is written as 0.7: ${body}`);
      assert.ok(!body.includes('0.10000000000000001') && !body.includes('0.69999999999999996'), 'no 17-digit re-print');
    });
  });
}
