import { describe, expect, it } from 'vitest';
import { TextChunker, speakable } from '../src/chunker.js';
import type { ChunkerOptions } from '../src/chunker.js';

interface Case {
  readonly name: string;
  readonly input: string;
  readonly chunks: readonly string[];
  readonly options?: ChunkerOptions;
  /** Some boundaries have no space (CJK, "—"): the chunks joined with spaces then differ from `speakable(input)`. */
  readonly unspaced?: boolean;
}

const CASES: readonly Case[] = [
  // Abbreviations and initials
  {
    name: 'Dr. is not a sentence end',
    input: 'Dr. Smith will see you now. Please take a seat in the waiting room.',
    chunks: ['Dr. Smith will see you now.', 'Please take a seat in the waiting room.'],
  },
  {
    name: 'Mr., Mrs., St.',
    input: 'Mr. and Mrs. Jones live on St. James Street. They moved here last year.',
    chunks: ['Mr. and Mrs. Jones live on St. James Street.', 'They moved here last year.'],
  },
  {
    name: 'titles before a capital',
    input: 'Ask Mr. Brown, Mrs. White, Ms. Black, Prof. Green or Gen. Grey. They know St. Louis and Mt. Hood well.',
    chunks: ['Ask Mr. Brown, Mrs. White, Ms. Black,', 'Prof. Green or Gen. Grey.', 'They know St. Louis and Mt. Hood well.'],
  },
  {
    name: 'vs., approx., cf., Jan., Mon. before a capital',
    input: 'It is Paris vs. London, approx. Twenty teams, cf. Table two, from Jan. Tenth on Mon. Evenings. Book now please.',
    chunks: ['It is Paris vs. London, approx. Twenty teams,', 'cf. Table two, from Jan. Tenth on Mon. Evenings.', 'Book now please.'],
  },
  {
    name: 'e.g. and i.e. (first chunk cut at a clause once it has 6 words)',
    input: 'Bring snacks, e.g. apples, and drinks, i.e. water. Thanks a lot for coming today!',
    chunks: ['Bring snacks, e.g. apples, and drinks,', 'i.e. water. Thanks a lot for coming today!'],
  },
  {
    name: 'etc. ends a sentence only before a capital',
    input: 'We sell pens, pencils, etc. and paper too. We also sell ink, etc. Then we close for the day.',
    chunks: ['We sell pens, pencils, etc. and paper too.', 'We also sell ink, etc.', 'Then we close for the day.'],
  },
  {
    name: 'vs., approx., No. 5',
    input: 'It is Paris vs. London tonight. Tickets cost approx. 3.5 euros for room No. 5 only.',
    chunks: ['It is Paris vs. London tonight.', 'Tickets cost approx. 3.5 euros for room No. 5 only.'],
  },
  {
    name: 'initials and U.S.',
    input: 'Ask J. R. R. Tolkien about it. He knows the U.S. Army well.',
    chunks: ['Ask J. R. R. Tolkien about it.', 'He knows the U.S. Army well.'],
  },
  {
    name: 'month and weekday abbreviations',
    input: 'The office is open Mon. and Tue. from Jan. 5 onwards. Call us on Fri. Mornings are quiet.',
    chunks: ['The office is open Mon. and Tue. from Jan. 5 onwards.', 'Call us on Fri. Mornings are quiet.'],
  },
  {
    name: 'No. as an answer is a sentence',
    input: 'No. I do not think that will work for you.',
    chunks: ['No.', 'I do not think that will work for you.'],
  },
  // Numbers, times, dates
  {
    name: 'money, thousands, versions, decimal times',
    input: 'It costs $4.99, or 1,000 points. Version v2.1 ships at 10.30 am sharp.',
    chunks: ['It costs $4.99, or 1,000 points.', 'Version v2.1 ships at 10.30 am sharp.'],
  },
  {
    name: 'decimals',
    input: 'Pi is about 3.14159 and e is 2.71828. Both are irrational numbers.',
    chunks: ['Pi is about 3.14159 and e is 2.71828.', 'Both are irrational numbers.'],
  },
  {
    name: 'clock times, dates, a.m. before a lowercase word',
    input: 'Meet me at 10:30 on 12/05/2026. The train leaves at 9 a.m. tomorrow, so be early.',
    chunks: ['Meet me at 10:30 on 12/05/2026.', 'The train leaves at 9 a.m. tomorrow, so be early.'],
  },
  {
    name: 'a.m. before a capital ends the sentence',
    input: 'See you at 9 a.m. Bring your passport and your ticket.',
    chunks: ['See you at 9 a.m.', 'Bring your passport and your ticket.'],
  },
  {
    name: 'a number before a full stop and a capital',
    input: 'I counted to 3. Then I stopped counting sheep.',
    chunks: ['I counted to 3.', 'Then I stopped counting sheep.'],
  },
  // Lists
  {
    name: 'inline numbered list: markers start items, never stand alone',
    input: '1. First item 2. Second item 3. Third item',
    chunks: ['1. First item', '2. Second item', '3. Third item'],
  },
  {
    name: 'numbered list on lines',
    input: 'Here are the steps:\n1. Mix the flour.\n2. Bake it for an hour.\n3. Let it cool.',
    chunks: ['Here are the steps:', '1. Mix the flour.', '2. Bake it for an hour.', '3. Let it cool.'],
  },
  {
    name: 'list after a colon',
    input: 'You have two options: 1. Pay now 2. Pay later. Which one do you prefer?',
    chunks: ['You have two options:', '1. Pay now', '2. Pay later. Which one do you prefer?'],
  },
  {
    name: 'list after a sentence',
    input: 'First, the basics. 1. Sign up online. 2. Confirm your email address.',
    chunks: ['First, the basics.', '1. Sign up online.', '2. Confirm your email address.'],
  },
  {
    name: 'bullets: markers stripped, lines never merged',
    input: '- Apples\n- Pears\n* one\n+ two\n  - nested three\n- [ ] a task',
    chunks: ['Apples', 'Pears', 'one', 'two', 'nested three', 'a task'],
  },
  // URLs, e-mails, ellipses, quotes
  {
    name: 'URLs and e-mails',
    input: 'Visit example.com or write to john.doe@example.com today. The page https://example.com/a.b?x=1 works too.',
    chunks: ['Visit example.com or write to john.doe@example.com today.', 'The page https://example.com/a.b?x=1 works too.'],
  },
  {
    name: 'ellipsis: a boundary before a capital only',
    input: 'Wait... What happened here? I think... maybe not. I see… Okay, fine!',
    chunks: ['Wait...', 'What happened here? I think... maybe not.', 'I see… Okay, fine!'],
  },
  {
    name: 'closing quotes stay with their sentence',
    input: 'He said "stop." Then he left the room. She asked, "Why?" and sighed.',
    chunks: ['He said "stop."', 'Then he left the room.', 'She asked, "Why?" and sighed.'],
  },
  {
    name: 'closing brackets and single quotes',
    input: "(It was late.) We went home after the show. 'Good night,' she said.",
    chunks: ['(It was late.)', 'We went home after the show.', "'Good night,' she said."],
  },
  {
    name: 'runs of ! and ?',
    input: 'Is it ready?! Yes!!! Great... thanks.',
    chunks: ['Is it ready?!', 'Yes!!! Great... thanks.'],
  },
  // Markdown
  {
    name: 'markdown emphasis, code, headings, strike, links',
    input:
      '**Note:** call *us* at `555-0100`.\n\n## Opening hours\nWe are open __daily__ ~~except Sunday~~ until ~5 pm. ' +
      'See [our site](https://example.com/hours) for more.',
    chunks: ['Note: call us at 555-0100.', 'Opening hours', 'We are open daily except Sunday until ~5 pm.', 'See our site for more.'],
  },
  {
    name: 'underscores inside words are kept, emphasis underscores dropped',
    input: 'Set my_var and mail john_doe@example.com, _not_ __this__. Done for today.',
    chunks: ['Set my_var and mail john_doe@example.com,', 'not this. Done for today.'],
  },
  {
    name: 'code fence lines dropped, code kept',
    input: 'Run this:\n```bash\nnpm install\n```\nThen restart the server.',
    chunks: ['Run this:', 'npm install', 'Then restart the server.'],
  },
  {
    name: 'thematic break and paragraph breaks',
    input: 'Part one is done.\n\n---\n\nPart two starts now.\n\n* * *\nNote the following:\n\nThe price is final.',
    chunks: ['Part one is done.', 'Part two starts now.', 'Note the following:', 'The price is final.'],
  },
  {
    name: 'blockquotes',
    input: '> Quoted text here.\n> More quoted text.',
    chunks: ['Quoted text here.', 'More quoted text.'],
  },
  // Non-English
  {
    name: 'Chinese: 。！？ need no space; short sentences merge',
    input: '你好。今天天气很好！你呢？好的。',
    chunks: ['你好。', '今天天气很好！你呢？好的。'],
    unspaced: true,
  },
  {
    name: 'Chinese: first chunk at a ， once it has 6 words',
    input: '我们今天去公园散步，然后去吃饭，好吗？',
    chunks: ['我们今天去公园散步，然后去吃饭，', '好吗？'],
    unspaced: true,
  },
  {
    name: 'Chinese: a closing quote stays with its sentence',
    input: '他说：“好的。”然后走了。',
    chunks: ['他说：“好的。”', '然后走了。'],
    unspaced: true,
  },
  {
    name: 'Japanese with 「」',
    input: 'こんにちは。「元気ですか？」と聞いた。',
    chunks: ['こんにちは。', '「元気ですか？」と聞いた。'],
    unspaced: true,
  },
  {
    name: 'Spanish ¿ and ¡',
    input: '¿Cómo estás? ¡Muy bien! Gracias por preguntar, amigo mío.',
    chunks: ['¿Cómo estás?', '¡Muy bien! Gracias por preguntar, amigo mío.'],
  },
  // First chunk and merging
  {
    name: 'first chunk: the first complete sentence, however short',
    input: 'Hi. How can I help you today?',
    chunks: ['Hi.', 'How can I help you today?'],
  },
  {
    name: 'first chunk: a clause of 6 words',
    input: 'Let me check the schedule for you, one moment.',
    chunks: ['Let me check the schedule for you,', 'one moment.'],
  },
  {
    name: 'first chunk: a clause of fewer words waits',
    input: 'Well, I think the best option for you would be the premium plan, because it covers everything you need.',
    chunks: ['Well, I think the best option for you would be the premium plan,', 'because it covers everything you need.'],
  },
  {
    name: 'firstChunkMinWords option',
    input: 'Okay then, let me check that.',
    chunks: ['Okay then,', 'let me check that.'],
    options: { firstChunkMinWords: 2 },
  },
  {
    name: 'later short sentences merge with the next',
    input: 'Sure. Okay. Let me check that for you right now. Yes. No. Maybe. So. We will see tomorrow.',
    chunks: ['Sure.', 'Okay. Let me check that for you right now.', 'Yes. No. Maybe. So. We will see tomorrow.'],
  },
  {
    name: 'a short last sentence is still emitted',
    input: 'That is all for today, thank you for calling. Bye.',
    chunks: ['That is all for today, thank you for calling.', 'Bye.'],
  },
  {
    name: 'minChunkChars 0: every sentence is a chunk',
    input: 'Sure. Okay. Let me check. Yes.',
    chunks: ['Sure.', 'Okay.', 'Let me check.', 'Yes.'],
    options: { minChunkChars: 0 },
  },
  // Long text
  {
    name: 'a sentence over maxChunkChars is cut at its last clause within the limit',
    input:
      'The first part is here, the second part follows it, then a third part comes along, and finally the fourth part ends it. Short one.',
    chunks: ['The first part is here, the second part follows it,', 'then a third part comes along,', 'and finally the fourth part ends it.', 'Short one.'],
    options: { maxChunkChars: 60 },
  },
  {
    name: 'a later long sentence is cut the same way',
    input: 'Here is a first sentence. The first part is here, the second part follows it, then a third part comes along.',
    chunks: ['Here is a first sentence.', 'The first part is here, the second part follows it,', 'then a third part comes along.'],
    options: { maxChunkChars: 60 },
  },
  {
    name: 'unpunctuated text over the limit is cut at its last space',
    input: `${'word '.repeat(25).trim()}.`,
    chunks: ['word '.repeat(10).trim(), 'word '.repeat(10).trim(), `${'word '.repeat(5).trim()}.`],
    options: { maxChunkChars: 50 },
  },
  {
    name: 'unpunctuated CJK over the limit is cut at the limit',
    input: `${'好'.repeat(120)}。`,
    chunks: ['好'.repeat(50), '好'.repeat(50), `${'好'.repeat(20)}。`],
    options: { maxChunkChars: 50 },
    unspaced: true,
  },
  // Known limitations, pinned: these stay conservative (no cut) rather than guess
  {
    name: 'limitation: a sentence ending in an initial or a dotted acronym is not cut',
    input: 'I got plan B. Then I moved to the U.S. Then I left for good.',
    chunks: ['I got plan B. Then I moved to the U.S. Then I left for good.'],
  },
  // Nothing to say
  { name: 'empty input', input: '', chunks: [] },
  { name: 'whitespace only', input: '   \n\t \n ', chunks: [] },
  { name: 'markdown only', input: '** __ `\n---\n', chunks: [] },
];

/** Mulberry32: a small seeded PRNG, so the random splits are the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomSplit(text: string, random: () => number, maxDelta: number): string[] {
  const deltas: string[] = [];
  for (let i = 0; i < text.length; ) {
    const n = 1 + Math.floor(random() * maxDelta);
    deltas.push(text.slice(i, i + n));
    i += n;
  }
  return deltas;
}

function run(deltas: readonly string[], options?: ChunkerOptions): string[] {
  const chunker = new TextChunker(options);
  const chunks = deltas.flatMap((delta) => chunker.push(delta));
  return [...chunks, ...chunker.flush()];
}

/** The feedings whose chunks differ from `expected` (an empty list when all agree), with what they produced. */
function disagreements(input: string, expected: readonly string[], options?: ChunkerOptions): { how: string; chunks: string[] }[] {
  const want = JSON.stringify(expected);
  return feedings(input)
    .map(({ how, deltas }) => ({ how, chunks: run(deltas, options) }))
    .filter(({ chunks }) => JSON.stringify(chunks) !== want);
}

/** Every way the tests feed a text: whole, one UTF-16 unit at a time, cut in two at every position, random deltas. */
function feedings(text: string): { readonly how: string; readonly deltas: readonly string[] }[] {
  const ways = [
    { how: 'whole', deltas: [text] },
    { how: '1-char deltas', deltas: text.split('') },
  ];
  for (let at = 1; at < text.length; at++) ways.push({ how: `split at ${at}`, deltas: [text.slice(0, at), text.slice(at)] });
  const random = prng(0x5eed);
  for (let k = 0; k < 8; k++) ways.push({ how: `random split #${k}`, deltas: randomSplit(text, random, 1 + (k % 4) * 3) });
  return ways;
}

function expectWellFormed(chunks: readonly string[], input: string, unspaced: boolean): void {
  for (const chunk of chunks) {
    expect(chunk).toBe(chunk.trim());
    expect(chunk).not.toBe('');
    expect(chunk).not.toMatch(/\s\s|\n/);
    expect(chunk).not.toMatch(/^\d{1,2}[.)]$/); // never a lone list marker
  }
  const spoken = speakable(input);
  if (unspaced) expect(chunks.join('').replace(/\s/g, '')).toBe(spoken.replace(/\s/g, ''));
  else expect(chunks.join(' ')).toBe(spoken);
}

describe('TextChunker: the same chunks however the text is split into deltas', () => {
  it.each(CASES)('$name', ({ input, chunks, options, unspaced }) => {
    expect(run([input], options)).toEqual(chunks);
    expect(disagreements(input, chunks, options)).toEqual([]);
    expectWellFormed(chunks, input, unspaced === true);
  });
});

describe('TextChunker: clause marks end a first chunk that has enough words', () => {
  it.each([
    ['Yes, go on.', ['Yes,', 'go on.']],
    ['Yes; go on.', ['Yes;', 'go on.']],
    ['Note: go on.', ['Note:', 'go on.']],
    ['Well - go on.', ['Well -', 'go on.']],
    ['Well – go on.', ['Well –', 'go on.']],
    ['Well -- go on.', ['Well --', 'go on.']],
    ['Well — go on.', ['Well —', 'go on.']],
    ['Well—go on.', ['Well—', 'go on.']],
    ['"Yes," he said.', ['"Yes,"', 'he said.']],
    ['好的，我们走吧。', ['好的，', '我们走吧。']],
    ['Pay 1,000 at 10:30 via https://x.io for 1990—2000 well-known -5 deals.', ['Pay 1,000 at 10:30 via https://x.io for 1990—2000 well-known -5 deals.']],
  ])('%j', (input, expected) => {
    expect(run([input], { firstChunkMinWords: 1 })).toEqual(expected);
    expect(disagreements(input, expected, { firstChunkMinWords: 1 })).toEqual([]);
    expectWellFormed(expected, input, /[—，]/.test(input));
  });
});

/** Pushes one character at a time; returns, per chunk, the index of the character whose push emitted it. */
function emissionPoints(text: string): { chunk: string; at: number }[] {
  const chunker = new TextChunker();
  const points: { chunk: string; at: number }[] = [];
  [...text].forEach((ch, at) => {
    for (const chunk of chunker.push(ch)) points.push({ chunk, at });
  });
  for (const chunk of chunker.flush()) points.push({ chunk, at: text.length });
  return points;
}

describe('TextChunker: latency', () => {
  it('emits the first sentence as soon as the next visible character confirms it', () => {
    const text = 'Hello there. How are you today?';
    expect(emissionPoints(text)).toEqual([
      { chunk: 'Hello there.', at: text.indexOf('How') },
      { chunk: 'How are you today?', at: text.length },
    ]);
  });

  it('emits a first clause of 6 words when the next word starts', () => {
    const text = 'Let me check the schedule for you, one moment please.';
    expect(emissionPoints(text)[0]).toEqual({ chunk: 'Let me check the schedule for you,', at: text.indexOf('one') });
  });

  it('confirms ! and ? at the next character, and CJK stops without a space', () => {
    expect(emissionPoints('Hi! How are you?')[0]).toEqual({ chunk: 'Hi!', at: 4 });
    expect(emissionPoints('你好。今天很好')[0]).toEqual({ chunk: '你好。', at: 3 });
  });

  it('holds an ambiguous dot until the next character decides', () => {
    const chunker = new TextChunker();
    expect(chunker.push('Dr')).toEqual([]);
    expect(chunker.push('.')).toEqual([]);
    expect(chunker.push(' ')).toEqual([]);
    expect(chunker.push('Smith is in. The price is 3')).toEqual(['Dr. Smith is in.']);
    expect(chunker.push('.')).toEqual([]);
    expect(chunker.push('5 euros.')).toEqual([]);
    expect(chunker.push(' And')).toEqual(['The price is 3.5 euros.']);
    expect(chunker.flush()).toEqual(['And']);
  });

  it('never emits text that later input changes (markdown split across deltas)', () => {
    const chunker = new TextChunker();
    expect(chunker.push('*')).toEqual([]);
    expect(chunker.push('*Hi')).toEqual([]);
    expect(chunker.push('!*')).toEqual([]);
    expect(chunker.push('* There')).toEqual(['Hi!']);
    expect(chunker.flush()).toEqual(['There']);
  });
});

describe('TextChunker: a long reply', () => {
  const sentences = [
    'Thanks for calling the clinic, my name is Ava and I can help you with your appointment today.',
    'I see that Dr. Smith has an opening on Mon. Jan. 12 at 10:30 a.m. and another at 3.45 p.m. on the same day.',
    'Sure.',
    'The visit costs $49.99, or approx. 1,000 points if you use the loyalty programme, e.g. the gold tier.',
    'Please bring your insurance card, a photo ID, your list of medications, any recent test results, the referral letter ' +
      'from your family doctor, and a pen, because there are several forms to fill in at the front desk before the visit starts.',
    'You can also read more at example.com/visits or write to front.desk@example.com with any questions.',
    'Okay?',
    'Great!',
    'Is there anything else I can help you with today?',
  ];
  const reply = Array.from({ length: 6 }, () => sentences.join(' ')).join(' ');

  it('chunks a 4 kB reply the same in token-sized deltas, within the size limits', () => {
    const whole = run([reply]);
    expect(run(randomSplit(reply, prng(42), 6))).toEqual(whole);
    expect(run(reply.split(''))).toEqual(whole);
    expectWellFormed(whole, reply, false);
    expect(whole[0]).toBe('Thanks for calling the clinic, my name is Ava and I can help you with your appointment today.');
    expect(whole).toContain('Sure. The visit costs $49.99, or approx. 1,000 points if you use the loyalty programme, e.g. the gold tier.');
    expect(whole).toContain('Okay? Great! Is there anything else I can help you with today?');
    for (const chunk of whole) expect(chunk.length).toBeLessThanOrEqual(200);
    for (const chunk of whole.slice(1, -1)) expect(chunk.length).toBeGreaterThanOrEqual(20);
    // The 230-character sentence is cut at its last comma within 200 characters.
    expect(whole).toContain(
      'Please bring your insurance card, a photo ID, your list of medications, any recent test results, the referral letter ' +
        'from your family doctor, and a pen,',
    );
    expect(whole).toContain('because there are several forms to fill in at the front desk before the visit starts.');
    expect(whole).toHaveLength(1 + 6 * 7 - 1);
  });
});

describe('TextChunker: lifecycle', () => {
  it('reset() forgets pending text (barge-in)', () => {
    const chunker = new TextChunker();
    expect(chunker.push('Dr. Smith is on his way')).toEqual([]);
    chunker.reset();
    expect(chunker.push('Hello there. How')).toEqual(['Hello there.']);
    expect(chunker.flush()).toEqual(['How']);
  });

  it('flush() ends the reply: the next reply gets a fast first chunk again', () => {
    const chunker = new TextChunker();
    expect(chunker.push('Hi. This is the first reply.')).toEqual(['Hi.']);
    expect(chunker.flush()).toEqual(['This is the first reply.']);
    expect(chunker.flush()).toEqual([]);
    expect(chunker.push('Yes. That')).toEqual(['Yes.']);
    expect(chunker.flush()).toEqual(['That']);
  });

  it('rejects invalid options', () => {
    expect(() => new TextChunker({ firstChunkMinWords: 0 })).toThrow(RangeError);
    expect(() => new TextChunker({ minChunkChars: -1 })).toThrow(RangeError);
    expect(() => new TextChunker({ maxChunkChars: 1.5 })).toThrow(RangeError);
    expect(() => new TextChunker({ minChunkChars: 50, maxChunkChars: 40 })).toThrow(RangeError);
  });
});

describe('speakable', () => {
  it.each([
    ['**bold** and *italic* and __strong__ and _em_', 'bold and italic and strong and em'],
    ['keeps snake_case, john_doe@example.com and ~5 but not ~~strike~~', 'keeps snake_case, john_doe@example.com and ~5 but not strike'],
    ['# Title\n## Sub title\n#1 and C# stay', 'Title Sub title #1 and C# stay'],
    ['- one\n* two\n+ three\n1. four\n-5 degrees', 'one two three 1. four -5 degrees'],
    ['> quoted\n> > nested', 'quoted nested'],
    ['Run `npm test` now.\n```ts\nconst a = 1;\n```\nDone.', 'Run npm test now. const a = 1; Done.'],
    ['See [the docs](https://example.com/a_b) and ![a cat](cat.png).', 'See the docs and a cat.'],
    ['Wow! [1] (really)', 'Wow! 1 (really)'],
    ['before\n\n---\n***\n___\n===\nafter', 'before after'],
    ['  lots   of \t space \n\n here  ', 'lots of space here'],
    ['', ''],
  ])('%j -> %j', (input, expected) => {
    expect(speakable(input)).toBe(expected);
  });
});
