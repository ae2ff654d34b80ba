"""Our server on 127.0.0.1, inside mitmproxy's event loop: it answers every request that asks for audio.

    app.py            the server's life (start, stop, a reload's wind-down), its table of routed
                      requests, and the handler that dispatches each to an answer (ANSWERS)
    job.py            what a routed request carries (Job), the settings it is answered with, the
                      services an answer uses (origin, planner, budgets, plan cache)
    sink.py           what an answer writes to, and the plain error pages it raises
    file_source.py    an MP4 as a file: probe, top level, plan, the plan cache
    file_answer.py    a file answer: validators, conditionals, ranges, and the body's window
    origin_groups.py  the audio of a byte range as origin requests: grouped, fetched, cut
    origin_answer.py  the origin's answer to the whole file: streamed, a 400, or relayed
    stream_answer.py  a streamed answer: the core fed as the origin's body arrives
    relay.py          the origin's answer as it is
"""
