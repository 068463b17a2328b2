// roundtrip.test.mjs — the official openai SDK against the worker, for every translating
// deployment family (Azure, Ollama, Anthropic, Gemini, Bedrock) pointed at the mock provider:
// plain chat (whole and streamed, usage with include_usage), a full tool-call round trip (the
// scripted tool call comes back as OpenAI tool_calls with the exact arguments; the client's
// second turn — assistant tool_calls + role "tool" result — reaches the provider in the
// provider's own shape, checked on the mock's recorded raw body), and two parallel calls in a
// stream (indices 0 and 1, arguments reassembled byte for byte).
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { itest, deployment, lastRequest, MASTER_KEY, PROVIDER_KEY, LITERAL_KEY } from './lib/harness.mjs';

const AZ_VERSION = '2024-10-21';
const BEDROCK_MODEL = 'anthropic.claude-3-5-sonnet-20240620-v1:0';
const question = 'What is the weather in Paris?';
const messages = [{ role: 'user', content: question }];
const tools = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] } } },
  { type: 'function', function: { name: 'get_time', description: 'Local time in a zone',
    parameters: { type: 'object', properties: { tz: { type: 'string' } }, required: ['tz'] } } },
];
// Key order, nesting, escapes and a non-ASCII character: the arguments must survive each
// provider's shape (an object for Anthropic/Gemini/Ollama/Bedrock) and come back identical.
const weatherArgs = { city: 'Paris', days: 3, ratio: 0.5, opts: { unit: 'C', tags: ['a "quoted" one', 'back\\slash', 'ü 😀', null, true] } };
const timeArgs = { tz: 'Europe/Paris' };
const weatherResult = { temp_c: 21, sky: 'clear' };
const timeResult = { time: '14:05' };

// family → deployment params, the provider's mock format, and what the provider must receive.
const FAMILIES = {
  azure: {
    params: (m) => ({ model: 'azure/my-chat', api_base: m.base, api_version: AZ_VERSION, api_key: LITERAL_KEY }),
    upstream: 'my-chat',
    checkAuth(lr) {
      assert.equal(lr.headers['api-key'], LITERAL_KEY, 'api-key header');
      assert.equal(lr.raw.path, '/openai/deployments/my-chat/chat/completions');
      assert.match(lr.raw.query, new RegExp(`(^|&)api-version=${AZ_VERSION}(&|$)`));
    },
    mockIds: true, // the mock's call ids (call_mock_<i>) reach the client unchanged
  },
  ollama: {
    params: (m) => ({ model: 'ollama/llama3', api_base: m.base }),
    upstream: 'llama3',
    checkAuth(lr) {
      assert.equal(lr.raw.path, '/api/chat');
      assert.ok(!lr.authorization, 'no Authorization without a key');
    },
    mockIds: false, // Ollama has no call ids: the adapter makes them up
  },
  anthropic: {
    params: (m) => ({ model: 'anthropic/claude-x', api_base: m.apiBase, api_key: 'os.environ/MOCK_KEY' }),
    upstream: 'claude-x',
    checkAuth(lr) {
      assert.equal(lr.raw.path, '/v1/messages');
      assert.equal(lr.headers['x-api-key'], PROVIDER_KEY);
      assert.ok(lr.headers['anthropic-version'], 'anthropic-version sent');
    },
    mockIds: true,
  },
  gemini: {
    params: (m) => ({ model: 'gemini/gemini-x', api_base: `${m.base}/v1beta`, api_key: LITERAL_KEY }),
    upstream: 'gemini-x',
    checkAuth(lr) {
      assert.match(lr.raw.path, /^\/v1beta\/models\/gemini-x:(generateContent|streamGenerateContent)$/);
      assert.equal(lr.headers['x-goog-api-key'], LITERAL_KEY);
    },
    mockIds: false, // Gemini matches calls by name: ids are the adapter's
  },
  bedrock: {
    // api_key alone → `Authorization: Bearer` (a Bedrock API key). The region is not needed
    // for the URL when api_base is set; it is given anyway, as a real config would.
    params: (m) => ({ model: `bedrock/${BEDROCK_MODEL}`, api_base: m.base, api_key: LITERAL_KEY, aws_region_name: 'us-east-1' }),
    upstream: BEDROCK_MODEL,
    checkAuth(lr) {
      assert.match(lr.raw.path, /^\/model\/anthropic\.claude-3-5-sonnet-20240620-v1%3A0\/converse(-stream)?$/);
      assert.equal(lr.authorization, `Bearer ${LITERAL_KEY}`);
    },
    mockIds: true,
  },
};

async function setup(env, family) {
  const mock = await env.startMock(`rt-${family}`);
  const cluster = await env.startCluster({
    model_list: [deployment('rt', FAMILIES[family].params(mock))],
    router_settings: { num_retries: 0, timeout: 10 },
  });
  const client = new OpenAI({ baseURL: `${cluster.worker.base}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
  return { mock, cluster, client };
}

/** Drains an SDK stream; tool-call deltas are reassembled per index, indices recorded. */
async function collect(stream) {
  let content = '', finish = null, usage = null, chunks = 0;
  const calls = [], indices = [];
  for await (const ch of stream) {
    chunks++;
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices || []) {
      if (c.delta?.content) content += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
      for (const tc of c.delta?.tool_calls || []) {
        assert.equal(typeof tc.index, 'number', `tool call delta has an index: ${JSON.stringify(tc)}`);
        if (!indices.includes(tc.index)) indices.push(tc.index);
        const slot = calls[tc.index] ??= { id: undefined, name: '', args: '' };
        if (tc.id) {
          assert.ok(slot.id === undefined || slot.id === tc.id, `one id per call index: ${slot.id} vs ${tc.id}`);
          slot.id = tc.id;
        }
        if (tc.function?.name) slot.name += tc.function.name;
        if (tc.function?.arguments) slot.args += tc.function.arguments;
      }
    }
  }
  return { content, finish, usage, chunks, calls, indices };
}

function assertUsage(u, what) {
  assert.ok(u && u.prompt_tokens > 0 && u.completion_tokens > 0, `${what}: usage ${JSON.stringify(u)}`);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, `${what}: total = prompt + completion`);
}

/** Tool calls from either leg-1 mode, as [{id, name, args}]. */
async function firstLeg(client, stream, body) {
  if (!stream) {
    const data = await client.chat.completions.create(body);
    assert.equal(data.choices.length, 1);
    assert.equal(data.choices[0].finish_reason, 'tool_calls');
    const m = data.choices[0].message;
    assert.equal(m.role, 'assistant');
    assert.ok(m.content === null || m.content === '', `no text with only tool calls: ${JSON.stringify(m.content)}`);
    for (const tc of m.tool_calls) assert.equal(tc.type, 'function');
    return m.tool_calls.map((tc) => ({ id: tc.id, name: tc.function.name, args: tc.function.arguments }));
  }
  const s = await collect(await client.chat.completions.create({ ...body, stream: true }));
  assert.equal(s.finish, 'tool_calls');
  assert.equal(s.content, '', 'no text with only tool calls');
  return s.calls;
}

// ---- what each provider must have received on the second leg -----------------------------

const textOf = (blocks) => (typeof blocks === 'string' ? blocks
  : blocks.filter((b) => b.type === 'text' || b.text !== undefined).map((b) => b.text).join(''));

/** calls: [{id, name, argsObj, result}] in order. */
const SECOND_LEG = {
  azure(body, calls) {
    assert.equal(body.model, 'my-chat', 'model spliced to the deployment');
    assert.deepEqual(body.messages.map((m) => m.role), ['user', 'assistant', ...calls.map(() => 'tool')]);
    const asst = body.messages[1];
    assert.equal(asst.tool_calls.length, calls.length);
    calls.forEach((c, i) => {
      assert.deepEqual(asst.tool_calls[i], { id: c.id, type: 'function', function: { name: c.name, arguments: c.args } },
        'assistant tool_calls passed through byte for byte');
      assert.deepEqual(body.messages[2 + i], { role: 'tool', tool_call_id: c.id, content: JSON.stringify(c.result) });
    });
    assert.deepEqual(body.tools, tools, 'tools passed through');
  },
  anthropic(body, calls) {
    assert.equal(body.model, 'claude-x');
    assert.deepEqual(body.messages.map((m) => m.role), ['user', 'assistant', 'user']);
    assert.equal(textOf(body.messages[0].content), question);
    const uses = body.messages[1].content;
    assert.deepEqual(uses, calls.map((c) => ({ type: 'tool_use', id: c.id, name: c.name, input: c.argsObj })));
    const results = body.messages[2].content;
    assert.equal(results.length, calls.length, `one tool_result per call: ${JSON.stringify(results)}`);
    calls.forEach((c, i) => {
      assert.equal(results[i].type, 'tool_result');
      assert.equal(results[i].tool_use_id, c.id, 'tool_result matches the tool_use id');
      assert.equal(textOf(results[i].content), JSON.stringify(c.result));
    });
    assert.deepEqual(body.tools.map((t) => t.name), ['get_weather', 'get_time']);
    assert.deepEqual(body.tools[0].input_schema, tools[0].function.parameters);
  },
  gemini(body, calls) {
    assert.deepEqual(body.contents.map((c) => c.role), ['user', 'model', 'user']);
    assert.deepEqual(body.contents[0].parts, [{ text: question }]);
    assert.deepEqual(body.contents[1].parts, calls.map((c) => ({ functionCall: { name: c.name, args: c.argsObj } })));
    assert.deepEqual(body.contents[2].parts,
      calls.map((c) => ({ functionResponse: { name: c.name, response: c.result } })),
      'functionResponse carries the function name and the JSON result');
    assert.deepEqual(body.tools[0].functionDeclarations.map((d) => d.name), ['get_weather', 'get_time']);
    assert.ok(!JSON.stringify(body).includes(calls[0].id), 'no tool call id upstream (Gemini matches by name)');
  },
  ollama(body, calls) {
    assert.equal(body.model, 'llama3');
    assert.deepEqual(body.messages.map((m) => m.role), ['user', 'assistant', ...calls.map(() => 'tool')]);
    assert.equal(body.messages[0].content, question);
    assert.deepEqual(body.messages[1].tool_calls, calls.map((c) => ({ function: { name: c.name, arguments: c.argsObj } })));
    calls.forEach((c, i) => {
      assert.deepEqual(body.messages[2 + i], { role: 'tool', tool_name: c.name, content: JSON.stringify(c.result) });
    });
    assert.deepEqual(body.tools, tools, 'tools passed through');
  },
  bedrock(body, calls) {
    assert.equal(body.model, undefined, 'no model in a Converse body');
    assert.deepEqual(body.messages.map((m) => m.role), ['user', 'assistant', 'user']);
    assert.deepEqual(body.messages[0].content, [{ text: question }]);
    assert.deepEqual(body.messages[1].content, calls.map((c) => ({ toolUse: { toolUseId: c.id, name: c.name, input: c.argsObj } })));
    assert.deepEqual(body.messages[2].content,
      calls.map((c) => ({ toolResult: { toolUseId: c.id, content: [{ text: JSON.stringify(c.result) }] } })));
    assert.deepEqual(body.toolConfig.tools.map((t) => t.toolSpec.name), ['get_weather', 'get_time']);
    assert.deepEqual(body.toolConfig.tools[0].toolSpec.inputSchema, { json: tools[0].function.parameters });
  },
};

/** Second leg: history with the assistant's tool_calls and one role "tool" message per call. */
async function secondLeg(client, mock, family, stream, calls) {
  const history = [
    ...messages,
    { role: 'assistant', content: null,
      tool_calls: calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.args } })) },
    ...calls.map((c) => ({ role: 'tool', tool_call_id: c.id, content: JSON.stringify(c.result) })),
  ];
  const body = { model: 'rt', messages: history, tools };
  if (stream) {
    const s = await collect(await client.chat.completions.create({ ...body, stream: true }));
    assert.equal(s.content, mock.hello, 'the answer after the tool result');
    assert.equal(s.finish, 'stop');
    assert.equal(s.calls.length, 0);
  } else {
    const data = await client.chat.completions.create(body);
    assert.equal(data.choices[0].message.content, mock.hello, 'the answer after the tool result');
    assert.equal(data.choices[0].finish_reason, 'stop');
    assert.equal(data.choices[0].message.tool_calls ?? undefined, undefined);
  }
  const lr = lastRequest(await mock.stats());
  assert.equal(lr.raw.format, family);
  FAMILIES[family].checkAuth(lr);
  assert.equal(lr.raw.model, FAMILIES[family].upstream);
  assert.ok(lr.body && typeof lr.body === 'object', `the mock recorded a JSON body: ${JSON.stringify(lr.raw).slice(0, 300)}`);
  SECOND_LEG[family](lr.body, calls.map((c) => ({ ...c, argsObj: JSON.parse(c.args) })));
}

function assertCalls(family, got, want) {
  assert.equal(got.length, want.length, `calls: ${JSON.stringify(got)}`);
  want.forEach((w, i) => {
    assert.equal(got[i].name, w.name, `call ${i} name`);
    assert.equal(got[i].args, JSON.stringify(w.args), `call ${i} arguments, exactly`);
    assert.equal(typeof got[i].id, 'string');
    assert.ok(got[i].id.length > 0, `call ${i} has an id`);
    if (FAMILIES[family].mockIds) {
      const mockId = { azure: `call_mock_${i}`, anthropic: `toolu_mock_${i}`, bedrock: `tooluse_mock_${i}` }[family];
      assert.equal(got[i].id, mockId, `call ${i}: the provider's id reaches the client`);
    }
  });
  assert.equal(new Set(got.map((c) => c.id)).size, got.length, 'distinct call ids');
}

for (const family of Object.keys(FAMILIES)) {
  itest(`${family}: chat, tool-call round trip (stream and not), parallel calls in a stream`, async (env, t) => {
    const { mock, client } = await setup(env, family);

    await t.test('chat: whole and streamed answers equal the mock\'s, usage', async () => {
      const { data, response } = await client.chat.completions.create({ model: 'rt', messages }).withResponse();
      assert.equal(response.headers.get('x-llmesh-deployment'), 'rt-1');
      assert.equal(data.object, 'chat.completion');
      assert.equal(data.choices[0].message.role, 'assistant');
      assert.equal(data.choices[0].message.content, mock.hello);
      assert.equal(data.choices[0].finish_reason, 'stop');
      assertUsage(data.usage, 'non-stream');
      const lr = lastRequest(await mock.stats());
      assert.equal(lr.raw.format, family);
      assert.equal(lr.raw.model, FAMILIES[family].upstream);
      FAMILIES[family].checkAuth(lr);
      assert.ok(!JSON.stringify(lr.raw.headers).includes(MASTER_KEY), 'the master key never goes upstream');

      const s = await collect(await client.chat.completions.create({ model: 'rt', messages, stream: true,
        stream_options: { include_usage: true } }));
      assert.equal(s.content, mock.hello);
      assert.equal(s.finish, 'stop');
      assert.ok(s.chunks >= 3, `several chunks (${s.chunks})`);
      assertUsage(s.usage, 'stream');
      FAMILIES[family].checkAuth(lastRequest(await mock.stats()));

      const plain = await collect(await client.chat.completions.create({ model: 'rt', messages, stream: true }));
      assert.equal(plain.content, mock.hello);
      assert.equal(plain.usage, null, 'no usage chunk without include_usage');
    });

    for (const stream of [false, true]) {
      await t.test(`tool-call round trip, first leg ${stream ? 'streamed' : 'whole'}`, async () => {
        await mock.reset();
        await mock.faults({ tool_calls: [{ name: 'get_weather', arguments: weatherArgs }] });
        const calls = await firstLeg(client, stream, { model: 'rt', messages, tools });
        assertCalls(family, calls, [{ name: 'get_weather', args: weatherArgs }]);
        const sent = lastRequest(await mock.stats());
        assert.equal(sent.raw.format, family);
        await secondLeg(client, mock, family, stream,
          calls.map((c) => ({ ...c, result: weatherResult })));
      });
    }

    await t.test('assistant text beside tool_calls, a tool result as content parts, then a user turn', async () => {
      await mock.reset();
      await mock.faults({ tool_calls: [{ name: 'get_weather', arguments: weatherArgs }] });
      const [c] = await firstLeg(client, false, { model: 'rt', messages, tools });
      assertCalls(family, [c], [{ name: 'get_weather', args: weatherArgs }]);
      const result = JSON.stringify(weatherResult), intro = 'Let me check.', follow = 'And tomorrow?';
      const history = [
        ...messages,
        { role: 'assistant', content: intro, tool_calls: [{ id: c.id, type: 'function', function: { name: c.name, arguments: c.args } }] },
        { role: 'tool', tool_call_id: c.id, content: [{ type: 'text', text: result }] },
        { role: 'user', content: follow },
      ];
      const data = await client.chat.completions.create({ model: 'rt', messages: history, tools });
      assert.equal(data.choices[0].message.content, mock.hello);
      const lr = lastRequest(await mock.stats());
      assert.equal(lr.raw.format, family);
      const b = lr.body, input = weatherArgs;
      const want = {
        azure: () => assert.deepEqual(b.messages, history, 'the history passes through as sent'),
        anthropic: () => assert.deepEqual(b.messages, [
          { role: 'user', content: [{ type: 'text', text: question }] },
          { role: 'assistant', content: [{ type: 'text', text: intro }, { type: 'tool_use', id: c.id, name: c.name, input }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: c.id, content: [{ type: 'text', text: result }] },
            { type: 'text', text: follow }] },
        ]),
        gemini: () => assert.deepEqual(b.contents, [
          { role: 'user', parts: [{ text: question }] },
          { role: 'model', parts: [{ text: intro }, { functionCall: { name: c.name, args: input } }] },
          { role: 'user', parts: [{ functionResponse: { name: c.name, response: weatherResult } }, { text: follow }] },
        ]),
        ollama: () => assert.deepEqual(b.messages, [
          { role: 'user', content: question },
          { role: 'assistant', content: intro, tool_calls: [{ function: { name: c.name, arguments: input } }] },
          { role: 'tool', tool_name: c.name, content: result },
          { role: 'user', content: follow },
        ]),
        bedrock: () => assert.deepEqual(b.messages, [
          { role: 'user', content: [{ text: question }] },
          { role: 'assistant', content: [{ text: intro }, { toolUse: { toolUseId: c.id, name: c.name, input } }] },
          { role: 'user', content: [{ toolResult: { toolUseId: c.id, content: [{ text: result }] } }, { text: follow }] },
        ]),
      };
      want[family]();
    });

    await t.test('parallel tool calls in a stream: indices 0 and 1, arguments exact; both results go back', async () => {
      await mock.reset();
      await mock.faults({ tool_calls: [{ name: 'get_weather', arguments: weatherArgs }, { name: 'get_time', arguments: timeArgs }] });
      const s = await collect(await client.chat.completions.create({ model: 'rt', messages, tools, stream: true,
        stream_options: { include_usage: true } }));
      assert.equal(s.finish, 'tool_calls');
      assert.equal(s.content, '');
      assert.deepEqual(s.indices, [0, 1], 'tool call indices 0 then 1');
      assertCalls(family, s.calls, [{ name: 'get_weather', args: weatherArgs }, { name: 'get_time', args: timeArgs }]);
      assertUsage(s.usage, 'parallel stream');
      await secondLeg(client, mock, family, false, [
        { ...s.calls[0], result: weatherResult },
        { ...s.calls[1], result: timeResult },
      ]);
    });
  });
}
