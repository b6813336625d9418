"""Write the demo's raw files: `python -m k12tune.demo.data demo/data_raw`.

Records are generated from small hand-written tables (maths word problems with worked
solutions, idioms, science facts, English words) so the demo needs no download. Every shape
the loaders support appears, and so do the traps of real data: a malformed JSON line, a record
with a missing field, a non-UTF-8 byte, an empty file, exact and width-variant duplicates,
repetitive text, a tool-call conversation and an identical preference pair.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

SYSTEM = "你是一位耐心的中小学老师，讲解要清楚、分步骤。"

IDIOMS = [
    ("画蛇添足", "画蛇时给蛇添上脚，比喻做了多余的事，反而不恰当。"),
    ("守株待兔", "比喻死守狭隘经验，不知变通，或妄想不劳而获。"),
    ("亡羊补牢", "羊丢了再去修补羊圈，比喻出了问题以后想办法补救，可以防止继续受损失。"),
    ("井底之蛙", "井底的青蛙只能看到井口那么大的天，比喻见识狭窄的人。"),
    ("对牛弹琴", "比喻对不懂道理的人讲道理，或说话写文章不看对象。"),
    ("拔苗助长", "把苗拔起来帮助它生长，比喻违反事物发展的规律，急于求成，反而坏事。"),
    ("自相矛盾", "比喻自己的言行前后抵触，不能自圆其说。"),
    ("掩耳盗铃", "捂住耳朵去偷铃铛，比喻自己欺骗自己，明明掩盖不住的事偏要设法掩盖。"),
    ("刻舟求剑", "比喻拘泥成例，不知道跟着情势的变化而改变看法或办法。"),
    ("杯弓蛇影", "把映在酒杯里的弓影当成蛇，比喻因疑神疑鬼而引起恐惧。"),
    ("纸上谈兵", "在纸面上谈论打仗，比喻空谈理论，不能解决实际问题。"),
    ("胸有成竹", "画竹子前心里已有竹子的形象，比喻做事之前已经有了通盘的考虑。"),
]

FACTS = [
    (
        "植物为什么需要阳光？",
        "植物通过光合作用，利用阳光的能量把二氧化碳和水变成有机物，并放出氧气。没有阳光，光合作用就无法进行。",
    ),
    (
        "水在多少摄氏度时沸腾？",
        "在一个标准大气压下，水在100摄氏度时沸腾；气压降低时，沸点也会降低，比如在高山上水不到100摄氏度就沸腾了。",
    ),
    (
        "为什么会有白天和黑夜？",
        "地球不停地自转，面向太阳的一面是白天，背向太阳的一面是黑夜，所以白天和黑夜交替出现。",
    ),
    (
        "声音是怎样产生的？",
        "声音是由物体振动产生的。振动停止，发声也就停止；声音需要空气、水或固体等介质才能传播。",
    ),
    ("月亮自己会发光吗？", "月亮自己不发光，我们看到的月光是月球反射的太阳光。"),
    ("什么是食物链？", "生态系统中，生物之间由于吃与被吃的关系形成的链条叫食物链，例如：草→兔子→狐狸。"),
    (
        "铁为什么会生锈？",
        "铁和空气中的氧气、水分发生化学反应，生成疏松的铁锈。保持干燥或刷油漆可以防止生锈。",
    ),
    ("为什么夏天穿浅色衣服更凉快？", "浅色衣服反射的阳光多、吸收的热量少，所以夏天穿浅色衣服更凉快。"),
]

WORDS = [
    ("apple", "苹果", "I eat an apple every day."),
    ("library", "图书馆", "We read books in the library."),
    ("weather", "天气", "The weather is sunny today."),
    ("teacher", "老师", "Our teacher is very kind."),
    ("homework", "家庭作业", "I finish my homework after dinner."),
    ("science", "科学", "Science helps us understand the world."),
]

NAMES = ["小明", "小红", "小刚", "小丽", "小华"]
ITEMS = [("苹果", "个"), ("铅笔", "支"), ("故事书", "本"), ("贴纸", "张")]


def maths_problems() -> list[tuple[str, str, str]]:
    """(question, worked answer, bare answer) for addition, subtraction and multiplication."""
    problems = []
    for i in range(60):
        name = NAMES[i % len(NAMES)]
        item, unit = ITEMS[i % len(ITEMS)]
        a, b = 12 + 7 * i % 50, 3 + 5 * i % 17
        kind = i % 3
        if kind == 0:
            q = f"{name}有{a}{unit}{item}，妈妈又给了他{b}{unit}，现在一共有多少{unit}？"
            steps = (
                f"把原有的和新得到的合起来，用加法：{a} + {b} = {a + b}。答：现在一共有{a + b}{unit}{item}。"
            )
            bare = f"{a + b}{unit}。"
        elif kind == 1:
            big = a + b
            q = f"{name}有{big}{unit}{item}，送给同学{b}{unit}，还剩多少{unit}？"
            steps = f"从总数里去掉送出的部分，用减法：{big} - {b} = {a}。答：还剩{a}{unit}{item}。"
            bare = f"{a}{unit}。"
        else:
            x, y = 2 + i % 8, 3 + i % 6
            q = f"每盒有{x}{unit}{item}，{name}买了{y}盒，一共有多少{unit}？"
            steps = f"求{y}个{x}是多少，用乘法：{x} × {y} = {x * y}。答：一共有{x * y}{unit}{item}。"
            bare = f"{x * y}{unit}。"
        problems.append((q, steps, bare))
    return problems


def _jsonl(path: Path, rows: list[Any]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_demo_raw(raw_dir: Path) -> None:
    sft, sft_en, pref = raw_dir / "demo_sft", raw_dir / "demo_sft_en", raw_dir / "demo_pref"
    for folder in (sft, sft_en, pref):
        folder.mkdir(parents=True, exist_ok=True)
    problems = maths_problems()

    alpaca = [{"instruction": q, "input": "", "output": a, "system": SYSTEM} for q, a, _ in problems[:40]]
    alpaca += [
        {"instruction": f"解释成语“{w}”的意思，并造一个句子。", "input": "", "output": f"“{w}”的意思是：{m}"}
        for w, m in IDIOMS
    ]
    alpaca.append(dict(alpaca[0]))  # exact duplicate
    alpaca.append({"instruction": "请重复。", "input": "", "output": "哈" * 200})  # repetitive
    alpaca.append({"instruction": "好", "input": "", "output": "好"})  # too short
    (sft / "alpaca.json").write_text(json.dumps(alpaca, ensure_ascii=False, indent=2), encoding="utf-8")

    prompt_response = [{"id": f"fact-{i}", "prompt": q, "response": a} for i, (q, a) in enumerate(FACTS)]
    # The same fact with full-width digits and extra white space: a duplicate after NFKC.
    prompt_response.append(
        {"id": "fact-dup", "prompt": FACTS[1][0] + "\u3000", "response": FACTS[1][1].replace("100", "１００")}
    )
    lines = [json.dumps(r, ensure_ascii=False) for r in prompt_response]
    lines.insert(3, '{"prompt": "这一行的JSON没有写完", "response": ')  # malformed JSON
    lines.insert(5, json.dumps({"prompt": "只有问题，没有回答的记录"}, ensure_ascii=False))  # missing field
    payload = "\n".join(lines).encode("utf-8") + b"\n"
    payload += b'{"prompt": "\xff\xfe bad bytes", "response": "x"}\n'  # not UTF-8
    (sft / "prompt_response.jsonl").write_bytes(payload)

    messages = [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": q},
                {"role": "assistant", "content": a},
                {"role": "user", "content": "能再讲得简单一点吗？"},
                {"role": "assistant", "content": f"当然可以。{a.split('。')[0]}。记住这一步就行。"},
            ]
        }
        for q, a, _ in problems[40:]
    ]
    _jsonl(sft / "messages.jsonl", messages)

    sharegpt = [
        {
            "conversations": [
                {"from": "human", "value": f"英语单词“{w}”是什么意思？怎么用？"},
                {"from": "gpt", "value": f"“{w}”的意思是“{zh}”。例句：{s}"},
            ]
        }
        for w, zh, s in WORDS
    ]
    sharegpt.append(
        {
            "conversations": [
                {"from": "human", "value": "帮我查一下明天北京的天气。"},
                {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "北京"}}'},
                {"from": "observation", "value": '{"weather": "晴"}'},
                {"from": "gpt", "value": "明天北京是晴天。"},
            ]
        }
    )
    _jsonl(sft / "sharegpt.jsonl", sharegpt)
    (sft / "empty.jsonl").write_bytes(b"")

    english = [
        {
            "instruction": f"What does the word '{w}' mean? Give an example.",
            "output": f"'{w}' means {zh}. Example: {s}",
        }
        for w, zh, s in WORDS
    ]
    (sft_en / "english.json").write_text(json.dumps(english, ensure_ascii=False, indent=2), encoding="utf-8")

    pairs: list[dict[str, Any]] = [
        {
            "conversations": [{"from": "system", "value": SYSTEM}, {"from": "human", "value": q}],
            "chosen": {"from": "gpt", "value": a},
            "rejected": {"from": "gpt", "value": f"答案是{bare}自己想想吧。"},
        }
        for q, a, bare in problems[:45]
    ]
    pairs += [
        {"question": q, "response_chosen": a, "response_rejected": "不知道，你去查书吧。"} for q, a in FACTS
    ]
    same = "1加1等于2，因为一个加一个是两个。"
    pairs.append({"prompt": "1加1等于几？请讲解。", "chosen": same, "rejected": same})  # identical
    (pref / "pairs.json").write_text(json.dumps(pairs, ensure_ascii=False, indent=2), encoding="utf-8")


def _choices(right: str, wrong: list[str], i: int) -> tuple[list[str], str]:
    """Four options with the right one at position i % 4, and its letter."""
    options = wrong[:3]
    options.insert(i % 4, right)
    return options, "ABCD"[i % 4]


def cmmlu_rows() -> dict[str, list[list[str]]]:
    """Demo questions for two CMMLU K12 subjects, in CMMLU's CSV columns (index, Question, A-D,
    Answer): word problems for elementary_mathematics, idiom meanings for elementary_chinese."""
    maths = []
    for i, (q, _, bare) in enumerate(maths_problems()[:30]):
        right = int(re.match(r"\d+", bare).group())
        wrong = [str(right + d) for d in (1, -1, 10)]
        options, answer = _choices(str(right), wrong, i)
        maths.append([str(i), q, *options, answer])
    chinese = []
    for i, (idiom, meaning) in enumerate(IDIOMS):
        others = [m for j, (_, m) in enumerate(IDIOMS) if j != i]
        wrong = [others[(i + k) % len(others)] for k in (0, 3, 6)]
        options, answer = _choices(meaning, wrong, i)
        chinese.append([str(i), f"成语“{idiom}”的意思是", *options, answer])
    return {"elementary_mathematics": maths, "elementary_chinese": chinese}


def write_demo_eval(eval_dir: Path) -> None:
    """`<eval_dir>/cmmlu/{dev,test}/<subject>.csv`: 5 few-shot rows per subject in dev, the
    rest in test, laid out as CMMLU publishes them (eval_harness reads it instead of the hub)."""
    import csv

    for subject, rows in cmmlu_rows().items():
        for split, part in (("dev", rows[:5]), ("test", rows[5:])):
            folder = eval_dir / "cmmlu" / split
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / f"{subject}.csv", "w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
                writer.writerows(part)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "demo/data_raw")
    write_demo_raw(target)
    write_demo_eval(target / "eval")
    print(f"demo raw data written to {target}/")
