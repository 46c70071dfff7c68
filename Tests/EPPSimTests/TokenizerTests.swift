import EPPLoad
import Testing

@testable import EPPSim

@Suite("Tokenizer and chat template")
struct TokenizerTests {
    let tok = SimTokenizer()

    @Test func piecesFollowWordsNotCharacterBlocks() {
        let text = "Hello world, this is a wonderful test!"
        #expect(tok.pieces(text) == ["Hell", "o", " worl", "d", ",", " this", " is", " a", " wond", "erfu", "l", " test", "!"])
        // Boundaries (character offsets) are not the multiples of 4 a fixed-block chunker uses.
        var offsets: [Int] = []
        var pos = 0
        for p in tok.pieces(text) {
            pos += p.count
            offsets.append(pos)
        }
        #expect(offsets.contains { $0 % 4 != 0 })
        #expect(Set(offsets) != Set(stride(from: 4, through: text.count, by: 4)))
        // Pieces concatenate back to the text.
        #expect(tok.pieces(text).joined() == text)
    }

    @Test func deterministicStableIDs() {
        let text = "The quick brown fox jumps over the lazy dog.\nSecond line:\tindented   spaces  "
        let a = tok.encode(text)
        let b = SimTokenizer().encode(text)
        #expect(a == b)
        #expect(a.count == tok.pieces(text).count)
        #expect(a.allSatisfy { $0 >= 100 && $0 < 50_100 })
        // FNV-1a 32 of "Hell" mod 50 000 + 100, computed independently.
        var h: UInt32 = 2_166_136_261
        for b in Array("Hell".utf8) { h = (h ^ UInt32(b)) &* 16_777_619 }
        #expect(SimTokenizer.tokenID("Hell") == Int(h % 50_000) + 100)
        #expect(tok.encode("Hello")[0] == SimTokenizer.tokenID("Hell"))
        // Newlines are their own tokens; trailing whitespace is kept.
        #expect(tok.pieces("a\n\nb  ") == ["a", "\n", "\n", "b", "  "])
    }

    @Test func specialTokensAreSingle() {
        #expect(tok.pieces("<|user|>\nhi") == ["<|user|>", "\n", "hi"])
        #expect(tok.pieces("a <|x") == ["a", " <", "|", "x"])
    }

    @Test func shortWordTextIsOneTokenPerWord() {
        #expect(tok.encode(" the cat ran").count == 3)
        var rng = SeededRNG(seed: 42)
        for n in [1, 7, 100, 1000] {
            let t = LoadText.text(tokens: n, rng: &rng)
            #expect(tok.encode(t).count == n)
        }
        // The load generator's copy of the word list must stay identical to the simulator's.
        #expect(LoadText.words == SimText.words)
        #expect(SimText.words.allSatisfy { $0.count <= 4 && $0.allSatisfy(\.isLetter) })
        let out = SimText.outputPieces(count: 20, seed: 7)
        #expect(tok.encode(out.joined()).count == 20)
        #expect(out == SimText.outputPieces(count: 20, seed: 7))
    }

    @Test func chatTemplateRendering() throws {
        let msgs = [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "Hi")]
        #expect(ChatTemplate.render(msgs) == "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n")
        #expect(ChatTemplate.render(msgs, addGenerationPrompt: false) == "<|system|>\nBe brief.\n<|user|>\nHi\n")
        // 2 tokens of markup + content + 1 newline per message, 2 for the generation prompt.
        let n = tok.encode(ChatTemplate.render(msgs)).count
        #expect(n == (2 + tok.encode("Be brief.").count + 1) + (2 + tok.encode("Hi").count + 1) + 2)
        // Content parts.
        let json = try JSON.parse(#"[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]}]"#)
        #expect(ChatTemplate.messages(from: json) == [ChatMessage(role: "user", content: "a\n<|image|>\nb")])
    }
}
