// Hand-written: on 40 sentence cases Intl.Segmenter passes 29 (splits "Dr. | Smith", "J. | R. | R.", "1. | First"), sbd 31 (CJK
// unsplit; last release 12/2024, pulls sanitize-html), sentence-splitter 28, @stdlib/nlp-sentencize 27 (all split "approx. | 3.5"); ours 40.
// None streams (none can say "need more input"), cuts clauses or strips markdown. Intl.Segmenter counts words in CJK/Thai.

/**
 * Streaming text chunker for a cascade voice agent: LLM deltas in, speakable TTS chunks out.
 *
 * - The first chunk of a reply ends at the first sentence end, or at an earlier clause boundary (`,;:` or a dash)
 *   once it has `firstChunkMinWords` words: speech starts early.
 * - Later chunks end at sentence ends; sentences shorter than `minChunkChars` are merged with the next one; text
 *   longer than `maxChunkChars` is cut at its last clause boundary (else its last space) within the limit.
 * - Line breaks and list markers ("1. a 2. b") are hard boundaries: list items are never merged.
 * - Never a boundary: abbreviations (Dr. Mr. St. e.g. i.e. vs. approx. Jan. Mon.), initials (J. R. R., U.S.),
 *   decimals, times, URLs and e-mails (no space after the dot), ". " before a lowercase letter or a digit.
 * - Markdown a TTS would read aloud is removed (see `speakable`); whitespace is collapsed; chunks are trimmed.
 * - A boundary is confirmed only once the next visible character has arrived, so chunks never depend on how the
 *   text was split into deltas, and emitted text never changes. `flush()` ends the reply and readies the next one.
 */

export interface ChunkerOptions {
  /** The first chunk may end at a clause boundary once it has this many words (default 6). */
  readonly firstChunkMinWords?: number;
  /** Later sentences shorter than this are merged with the next one (default 20 characters). */
  readonly minChunkChars?: number;
  /** Sentences longer than this are split at clause boundaries (default 200 characters). */
  readonly maxChunkChars?: number;
}

/** Ends a sentence when followed by a space. */
const TERMINATORS: ReadonlySet<string> = new Set(['.', '!', '?', '…', '‼', '⁇', '⁈', '⁉', '‽', '؟', '।', '॥']);
/** Ends a sentence without a following space (CJK). */
const WIDE_TERMINATORS: ReadonlySet<string> = new Set(['。', '！', '？', '｡']);
/** Closing quotes and brackets that stay with the sentence or clause they close. */
const CLOSERS: ReadonlySet<string> = new Set(['"', "'", '”', '’', '»', '›', ')', ']', '}', '」', '』', '）', '】', '》', '〉', '〕']);
/** Clause marks, a boundary when followed by a space. */
const CLAUSE_MARKS: ReadonlySet<string> = new Set([',', ';', ':', '،', '؛']);
/** CJK clause marks, a boundary as they are. */
const WIDE_CLAUSE_MARKS: ReadonlySet<string> = new Set(['，', '、', '；', '：']);
/** Words whose trailing dot never ends a sentence (compared in lower case). */
const ABBREVIATIONS: ReadonlySet<string> = new Set([
  'mr', 'mrs', 'ms', 'mx', 'messrs', 'dr', 'prof', 'rev', 'st', 'mt', 'capt', 'col', 'lt', 'sgt', 'gov', 'sen', 'rep',
  'pres', 'vs', 'v', 'approx', 'appx', 'cf', 'e.g', 'eg', 'i.e', 'viz', 'fig', 'figs', 'vol', 'pp', 'dept', 'ave',
  'blvd', 'jan', 'feb', 'apr', 'jun', 'jul', 'aug', 'sep', 'sept', 'oct', 'nov', 'dec', 'mon', 'tue', 'tues', 'thu',
  'thur', 'thurs', 'fri',
]);
/** Abbreviations that are also common words, recognised only as written here. */
const CASED_ABBREVIATIONS: ReadonlySet<string> = new Set(['Gen', 'Mar', 'Wed', 'Sat', 'Sun']);

const CLAUSE = 0;
const SENTENCE = 1;
const HARD = 2;
type CutKind = typeof CLAUSE | typeof SENTENCE | typeof HARD;

interface Cut {
  /** Index in the reply's clean text where a chunk may end. */
  readonly pos: number;
  kind: CutKind;
}

/** Returned by a scanner step that needs more input to decide. */
const WAIT = -1;
/** Returned by the line-prefix matcher when the line starts with no markdown marker. */
const NONE = -2;
/** A `](` longer than this without `)` is not a link. */
const MAX_LINK_TARGET = 2048;
/** Clean text kept before the unemitted part when the buffer is compacted (look-behind needs a few characters). */
const KEEP_BEHIND = 256;

const SPACE = /^\s$/u;
const ALNUM = /^[\p{L}\p{N}]$/u;
const SPEAKABLE = /[\p{L}\p{N}]/u;
const LOWER = /^\p{Ll}$/u;
const DIGIT = /^\p{Nd}$/u;
const INITIALS = /^(?:\p{L}\.)+\p{L}$/u;
// Stateless (segment() returns a fresh iterable): an immutable table, not shared mutable state.
const WORDS = new Intl.Segmenter('en', { granularity: 'word' });

/** Whitespace other than a line break. */
const isSpace = (c: string): boolean => c === ' ' || c === '\t' || ((c < ' ' || c > '~') && c !== '\n' && SPACE.test(c));
/** Whitespace in the clean text, which has only ' ' and '\n'. */
const isWhitespace = (c: string): boolean => c === ' ' || c === '\n';
const isAlnum = (c: string): boolean =>
  (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c > '~' && ALNUM.test(c));
const isAsciiDigit = (c: string): boolean => c >= '0' && c <= '9';

/** Scripts written without spaces between words, which need ICU's dictionary to find words. */
const UNSPACED_SCRIPT = /[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}\p{sc=Thai}\p{sc=Lao}\p{sc=Khmer}\p{sc=Myanmar}]/u;
/** A word in a spaced script, as Intl.Segmenter counts it ("don't", "e.g", "4.99": one each); matchAll uses a copy, no shared lastIndex. */
const SPACED_WORD = /[\p{L}\p{N}\p{M}]+(?:['’.][\p{L}\p{N}\p{M}]+)*/gu;

function countWords(text: string, enough: number): number {
  let n = 0;
  if (!UNSPACED_SCRIPT.test(text)) {
    for (const _ of text.matchAll(SPACED_WORD)) if (++n >= enough) break;
    return n;
  }
  for (const segment of WORDS.segment(text)) {
    if (segment.isWordLike && ++n >= enough) break;
  }
  return n;
}

/** True when the dot right after `word` is part of an abbreviation or initial, not a sentence end. */
function isAbbreviation(word: string): boolean {
  if (word === '') return false;
  if (ABBREVIATIONS.has(word.toLowerCase()) || CASED_ABBREVIATIONS.has(word)) return true;
  if (/^\p{Lu}$/u.test(word)) return true; // an initial: "J. R. R. Tolkien"
  const lower = word.toLowerCase();
  // Dotted capitals ("U.S", "D.C") never end a sentence; "a.m"/"p.m" do before a capital.
  return INITIALS.test(word) && word !== lower && lower !== 'a.m' && lower !== 'p.m';
}

/**
 * Streaming markdown filter: removes what a TTS would read aloud and collapses whitespace to one ' ' or '\n'.
 * Holds back only what the next characters could still change (a line start, `_`, `~`, `!`, `](`, and whitespace).
 */
class MarkdownFilter {
  private pending = '';
  private lineStart = true;
  private dropLine = false;
  private space: '' | ' ' | '\n' = '';
  private started = false;
  private lastConsumed = '';
  private out = '';

  /** Feeds raw text; returns clean text that later input can no longer change. `final` ends the text. */
  push(raw: string, final: boolean): string {
    const text = this.pending + raw;
    this.out = '';
    let i = 0;
    while (i < text.length) {
      const next = this.step(text, i, final);
      if (next === WAIT) break;
      i = next;
    }
    if (i > 0) this.lastConsumed = text.charAt(i - 1);
    this.pending = text.slice(i);
    return this.out;
  }

  private step(s: string, i: number, final: boolean): number {
    const c = s.charAt(i);
    if (this.dropLine) {
      if (c === '\n') {
        this.dropLine = false;
        this.lineStart = true;
        this.addSpace('\n');
      }
      return i + 1;
    }
    if (c === '\n') {
      this.lineStart = true;
      this.addSpace('\n');
      return i + 1;
    }
    if (isSpace(c)) {
      this.addSpace(' ');
      return i + 1;
    }
    if (this.lineStart) {
      const next = this.linePrefix(s, i, final);
      if (next !== NONE) return next;
      this.lineStart = false;
    }
    const after = s.charAt(i + 1); // '' at the end of the input so far
    const undecided = after === '' && !final;
    switch (c) {
      case '*':
      case '`':
      case '[':
        return i + 1;
      case '_': {
        // Emphasis, unless inside a word: snake_case, john_doe@example.com.
        if (undecided) return WAIT;
        const before = i > 0 ? s.charAt(i - 1) : this.lastConsumed;
        if (isAlnum(before) && isAlnum(after)) this.emit(c);
        return i + 1;
      }
      case '~':
        // "~~strike~~" goes, "~5 minutes" stays.
        if (undecided) return WAIT;
        if (after === '~') return i + 2;
        this.emit(c);
        return i + 1;
      case '!':
        // "![alt](src)" keeps the alt text only.
        if (undecided) return WAIT;
        if (after !== '[') this.emit(c);
        return i + 1;
      case ']': {
        // "[text](target)" keeps the text only.
        if (undecided) return WAIT;
        if (after !== '(') return i + 1;
        const end = Math.min(s.length, i + MAX_LINK_TARGET);
        for (let j = i + 2; j < end; j++) {
          const d = s.charAt(j);
          if (d === ')') return j + 1;
          if (d === '\n' || isSpace(d)) return i + 1;
        }
        return end === s.length && end < i + MAX_LINK_TARGET && !final ? WAIT : i + 1;
      }
      default:
        this.emit(c);
        return i + 1;
    }
  }

  /** Markdown at the start of a line: heading, quote, bullet, code fence, thematic break. */
  private linePrefix(s: string, i: number, final: boolean): number {
    const c = s.charAt(i);
    if (c === '#') {
      let j = i;
      while (s.charAt(j) === '#') j++;
      if (j === s.length && !final) return WAIT;
      const after = s.charAt(j);
      if (j - i > 6 || !(after === '' || after === '\n' || isSpace(after))) return NONE; // "#1", "#hashtag"
      this.lineStart = false;
      return j;
    }
    if (c === '>') return i + 1; // quote marker; the line may go on with more markers
    if (c === '`' || c === '~') {
      let j = i;
      while (s.charAt(j) === c) j++;
      if (j - i >= 3) {
        this.dropLine = true; // fence line and its info string ("```python")
        this.lineStart = false;
        return j;
      }
      return j === s.length && !final ? WAIT : NONE;
    }
    if (c === '-' || c === '*' || c === '+' || c === '_' || c === '=') {
      let j = i;
      let marks = 0;
      for (; j < s.length; j++) {
        const d = s.charAt(j);
        if (d === c) marks++;
        else if (d !== ' ' && d !== '\t') break;
      }
      if (j === s.length && !final) return WAIT;
      const end = s.charAt(j);
      if (marks >= 3 && (end === '' || end === '\n' || end === '\r')) {
        this.dropLine = true; // "---", "***", "* * *", "===" (setext underline)
        this.lineStart = false;
        return j;
      }
      if ((c === '-' || c === '*' || c === '+') && isSpace(s.charAt(i + 1))) {
        this.lineStart = false; // bullet: the line break before it is the boundary
        return i + 1;
      }
    }
    return NONE;
  }

  private addSpace(kind: ' ' | '\n'): void {
    if (kind === '\n') this.space = '\n';
    else if (this.space === '') this.space = ' ';
  }

  private emit(c: string): void {
    if (this.started && this.space !== '') this.out += this.space;
    this.space = '';
    this.started = true;
    this.out += c;
  }
}

/**
 * Markdown and symbols a TTS would read aloud, removed from speakable text: emphasis (`*`, `_`, `~~`), inline code
 * backticks, heading `#`, quote `>`, bullet `-`/`*`/`+` markers, code-fence and thematic-break lines (code inside a fence
 * is kept), link and image targets (`[text](url)` -> `text`). Whitespace is collapsed to single spaces and trimmed.
 * Numbered list markers ("1.") are kept: they are worth saying.
 */
export function speakable(text: string): string {
  return new MarkdownFilter().push(text, true).replace(/\n/g, ' ');
}

export class TextChunker {
  private readonly firstChunkMinWords: number;
  private readonly minChunkChars: number;
  private readonly maxChunkChars: number;

  private filter = new MarkdownFilter();
  /** The reply's clean text (whitespace collapsed to one ' ' or '\n'; compacted as chunks are emitted). */
  private text = '';
  /** First index of `text` not yet emitted. */
  private start = 0;
  /** First index of `text` not yet classified: every cut before it is final. */
  private cursor = 0;
  /** Candidate cuts after `start`, in order. */
  private cuts: Cut[] = [];
  /** `cuts[0..evaluated)` were rejected for the chunk starting at `start`. */
  private evaluated = 0;
  private emitted = false;
  /** The last list marker number seen ("2." after "1."), 0 outside a list. */
  private listNumber = 0;

  constructor(options: ChunkerOptions = {}) {
    this.firstChunkMinWords = options.firstChunkMinWords ?? 6;
    this.minChunkChars = options.minChunkChars ?? 20;
    this.maxChunkChars = options.maxChunkChars ?? 200;
    if (!Number.isInteger(this.firstChunkMinWords) || this.firstChunkMinWords < 1) {
      throw new RangeError(`firstChunkMinWords must be an integer >= 1, got ${this.firstChunkMinWords}`);
    }
    if (!Number.isInteger(this.minChunkChars) || this.minChunkChars < 0) {
      throw new RangeError(`minChunkChars must be an integer >= 0, got ${this.minChunkChars}`);
    }
    if (!Number.isInteger(this.maxChunkChars) || this.maxChunkChars < Math.max(1, this.minChunkChars)) {
      throw new RangeError(`maxChunkChars must be an integer >= max(1, minChunkChars), got ${this.maxChunkChars}`);
    }
  }

  /** Feed an LLM delta; returns the chunks it completed, in order (often none). */
  push(delta: string): string[] {
    this.text += this.filter.push(delta, false);
    return this.advance(false);
  }

  /** End of the reply: the remaining text as chunks (possibly none). The chunker is then ready for the next reply. */
  flush(): string[] {
    this.text += this.filter.push('', true);
    const chunks = this.advance(true);
    this.reset();
    return chunks;
  }

  /** Forget everything (barge-in). */
  reset(): void {
    this.filter = new MarkdownFilter();
    this.text = '';
    this.start = 0;
    this.cursor = 0;
    this.cuts = [];
    this.evaluated = 0;
    this.emitted = false;
    this.listNumber = 0;
  }

  private advance(final: boolean): string[] {
    while (this.cursor < this.text.length) {
      const next = this.classify(this.cursor, final);
      if (next === WAIT) break;
      this.cursor = next;
    }
    const chunks: string[] = [];
    for (let cut = this.nextCut(final); cut !== undefined; cut = this.nextCut(final)) {
      const chunk = this.text.slice(this.start, cut).replace(/\n/g, ' ').trim();
      if (chunk !== '') {
        chunks.push(chunk);
        this.emitted = true;
      }
      this.start = cut;
      let done = 0;
      while (done < this.cuts.length && (this.cuts[done]?.pos ?? Infinity) <= cut) done++;
      this.cuts.splice(0, done);
      this.evaluated = 0;
    }
    this.compact();
    return chunks;
  }

  /** Where the next chunk ends, if that is decided. */
  private nextCut(final: boolean): number | undefined {
    for (; this.evaluated < this.cuts.length; this.evaluated++) {
      const cut = this.cuts[this.evaluated];
      if (cut === undefined || (cut.pos >= this.cursor && !final)) break; // a cut at the cursor may still be upgraded
      if (this.lengthTo(cut.pos) > this.maxChunkChars) break;
      if (this.qualifies(this.text.slice(this.start, cut.pos).trim(), cut.kind)) return cut.pos;
    }
    const limit = final ? this.text.length : this.cursor;
    const length = this.lengthTo(limit);
    if (length > this.maxChunkChars) return this.cutLongText(limit);
    return final && length > 0 ? limit : undefined;
  }

  /** Length of the trimmed text from `start` to `end`, in O(1): the clean text has no two whitespace in a row. */
  private lengthTo(end: number): number {
    let from = this.start;
    let to = end;
    if (from < to && isWhitespace(this.text.charAt(from))) from++;
    if (to > from && isWhitespace(this.text.charAt(to - 1))) to--;
    return to - from;
  }

  private qualifies(piece: string, kind: CutKind): boolean {
    if (!SPEAKABLE.test(piece)) return false; // nothing to say yet ("...", "—"): merge with what follows
    if (!this.emitted) return kind !== CLAUSE || countWords(piece, this.firstChunkMinWords) >= this.firstChunkMinWords;
    return kind === HARD || (kind === SENTENCE && piece.length >= this.minChunkChars);
  }

  /** Text past `maxChunkChars` with no acceptable boundary: the last cut within the limit, else the last space. */
  private cutLongText(limit: number): number {
    let best: number | undefined;
    for (const cut of this.cuts) {
      if (cut.pos >= limit) break;
      const length = this.lengthTo(cut.pos);
      if (length > this.maxChunkChars) break;
      if (length > 0) best = cut.pos;
    }
    if (best !== undefined) return best;
    let lead = this.start;
    if (isWhitespace(this.text.charAt(lead))) lead++;
    const space = this.text.lastIndexOf(' ', lead + this.maxChunkChars);
    if (space > lead) return space;
    let end = lead + this.maxChunkChars; // no space at all (unpunctuated CJK): a hard cut
    const code = this.text.charCodeAt(end - 1);
    if (code >= 0xd800 && code <= 0xdbff) end--;
    return end;
  }

  private addCut(pos: number, kind: CutKind): void {
    const last = this.cuts[this.cuts.length - 1];
    if (last?.pos === pos) last.kind = Math.max(last.kind, kind) as CutKind;
    else this.cuts.push({ pos, kind });
  }

  /** Classifies the character at `i`, recording cuts; returns the next index to classify, or WAIT. */
  private classify(i: number, final: boolean): number {
    const t = this.text;
    const c = t.charAt(i);
    if (c === '\n') {
      this.addCut(i, HARD);
      return i + 1;
    }
    if (c === ' ') return i + 1;
    if (TERMINATORS.has(c)) return this.classifyTerminator(i, final);
    if (WIDE_TERMINATORS.has(c)) {
      let k = i;
      while (WIDE_TERMINATORS.has(t.charAt(k)) || TERMINATORS.has(t.charAt(k))) k++;
      while (CLOSERS.has(t.charAt(k))) k++;
      if (k === t.length && !final) return WAIT;
      this.addCut(k, SENTENCE);
      return k;
    }
    if (CLAUSE_MARKS.has(c)) {
      let k = i + 1;
      while (CLOSERS.has(t.charAt(k))) k++;
      if (k === t.length) return final ? k : WAIT;
      if (t.charAt(k) === ' ' || t.charAt(k) === '\n') this.addCut(k, CLAUSE); // not "1,000", "10:30", "http://"
      return k;
    }
    if (WIDE_CLAUSE_MARKS.has(c)) {
      this.addCut(i + 1, CLAUSE);
      return i + 1;
    }
    if (c === '—' || c === '―') {
      let k = i;
      while (t.charAt(k) === '—' || t.charAt(k) === '―') k++;
      if (k === t.length) return final ? k : WAIT;
      if (!(DIGIT.test(t.charAt(i - 1)) && DIGIT.test(t.charAt(k)))) this.addCut(k, CLAUSE);
      return k;
    }
    if ((c === '-' || c === '–') && t.charAt(i - 1) === ' ') {
      let k = i;
      while (t.charAt(k) === '-' || t.charAt(k) === '–') k++;
      if (k === t.length) return final ? k : WAIT;
      if (t.charAt(k) === ' ') this.addCut(k, CLAUSE); // a spaced dash; not "-5" or "well-known"
      return k;
    }
    if (isAsciiDigit(c) && (i === 0 || t.charAt(i - 1) === ' ' || t.charAt(i - 1) === '\n')) {
      return this.classifyNumber(i, final);
    }
    return i + 1;
  }

  /** `.`, `!`, `?`, `…` (and runs like "?!", "..."), with closing quotes: a sentence end if a space and no lowercase follow. */
  private classifyTerminator(i: number, final: boolean): number {
    const t = this.text;
    let j = i;
    while (TERMINATORS.has(t.charAt(j))) j++;
    let k = j;
    while (CLOSERS.has(t.charAt(k))) k++;
    if (k === t.length) {
      if (!final) return WAIT;
      this.addCut(k, SENTENCE);
      return k;
    }
    const gap = t.charAt(k);
    if (gap === '\n') return k; // the line break is a (harder) cut at k
    if (gap !== ' ') return k; // "3.5", "example.com", "v2.1", "e.g" (first dot)
    if (k + 1 === t.length) {
      if (!final) return WAIT;
      this.addCut(k, SENTENCE);
      return k;
    }
    const next = t.charAt(k + 1);
    if (LOWER.test(next) || DIGIT.test(next)) return k; // "a.m. tomorrow", "etc. and", "No. 5", "approx. 3.5"
    if (j - i === 1 && t.charAt(i) === '.') {
      let from = i;
      while (from > 0 && i - from < 40 && (t.charAt(from - 1) === '.' || isAlnum(t.charAt(from - 1)))) from--;
      if (isAbbreviation(t.slice(from, i).replace(/^\.+/u, ''))) return k;
    }
    this.addCut(k, SENTENCE);
    return k;
  }

  /** A number at a word start: "2." is a list marker (a hard cut before it, none after) at a line start, after "1.", or "1." after a colon or a sentence. */
  private classifyNumber(i: number, final: boolean): number {
    const t = this.text;
    let j = i;
    while (isAsciiDigit(t.charAt(j))) j++;
    if (j === t.length) return final ? j : WAIT;
    if (j - i > 2) return j;
    const mark = t.charAt(j);
    if (mark !== '.' && mark !== ')') return j;
    if (j + 1 === t.length) return final ? j : WAIT;
    const gap = t.charAt(j + 1);
    if (gap !== ' ' && gap !== '\n') return j; // "3.5", "1)x"
    const n = Number(t.slice(i, j));
    let b = i - 1;
    while (b >= 0 && t.charAt(b) === ' ') b--;
    const before = b >= 0 ? t.charAt(b) : '';
    const lineStart = before === '' || before === '\n';
    const startsList = n === 1 && (before === ':' || TERMINATORS.has(before) || WIDE_TERMINATORS.has(before));
    const continuesList = this.listNumber > 0 && n === this.listNumber + 1;
    if (!lineStart && !startsList && !continuesList) return j; // "counted to 3. Then": an ordinary sentence end
    this.listNumber = n;
    this.addCut(i, HARD);
    return j + 1;
  }

  /** Drops emitted text from the buffer, keeping a little for look-behind. */
  private compact(): void {
    const drop = this.start - KEEP_BEHIND;
    if (drop < 4 * KEEP_BEHIND) return;
    this.text = this.text.slice(drop);
    this.start -= drop;
    this.cursor -= drop;
    this.cuts = this.cuts.map((cut) => ({ pos: cut.pos - drop, kind: cut.kind }));
  }
}
