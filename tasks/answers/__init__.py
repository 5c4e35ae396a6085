"""Reading a model's reply: the answer after ``</think>``, MCQ letters, an LLM judge's score, and DiG's grounding reward with the box parser evaluation shares."""
