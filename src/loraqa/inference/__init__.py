"""Loading a model to answer, answering, and evaluating answers: every command that answers starts here.

    ready.py         load_for_answering: the one way a model to answer is loaded (predict, eval, merge,
                     the Python API, the server); answer_setup: the same decisions without the weights
    shared_base.py   the server's adapters sharing one loaded base (peft named adapters)
    answer.py        Answer, the one answer type, and answer(): records -> Answers
    predict.py       `loraqa predict`: its questions in (checked as data files are) and answer lines out
    evaluate.py      evaluate_records: answer and score records (EM/F1/ROUGE, slices); write_outcome
    uncertainty.py   intervals and paired comparisons over the evaluated rows
    eval_command.py  `loraqa eval`: load, evaluate on the test split per decoding, write, print
    merge.py         `loraqa merge`: write base + adapter as one model
    offsets.py       where an answer sits in its context

Training's own evaluation (pipeline/evaluate_phase.py) scores its in-memory model with evaluate.py.
"""
