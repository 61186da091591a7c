import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()
TRUE_W = np.array([1.5, -2.0, 0.5, 1.0, -1.0, 0.25])


def _data(partition: int, n: int = 200):
    rng = np.random.default_rng(partition)
    x = rng.normal(size=(n, 6))
    y = (x @ TRUE_W + rng.normal(0, 0.5, n) > 0).astype(float)
    return x, y


def _loss_acc(w, x, y):
    p = 1 / (1 + np.exp(-(x @ w)))
    loss = float(-np.mean(y * np.log(p + 1e-9) + (1 - y) * np.log(1 - p + 1e-9)))
    return loss, float(np.mean((p > 0.5) == y)), p


@app.train()
def train(msg: Message, context: Context) -> Message:
    x, y = _data(int(context.node_config["partition-id"]))
    w = msg.content["arrays"]["w"].numpy().copy()
    for _ in range(20):
        _, _, p = _loss_acc(w, x, y)
        w -= float(msg.content["config"]["lr"]) * x.T @ (p - y) / len(y)
    loss, _, _ = _loss_acc(w, x, y)
    print(f"partition {context.node_config['partition-id']} of {context.node_config['num-partitions']}: "
          f"local loss {loss:.4f}")
    return Message(RecordDict({"arrays": ArrayRecord({"w": Array(w)}),
                               "metrics": MetricRecord({"train_loss": loss, "num-examples": len(y)})}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    x, y = _data(1000 + int(context.node_config["partition-id"]), n=100)
    loss, acc, _ = _loss_acc(msg.content["arrays"]["w"].numpy(), x, y)
    return Message(RecordDict({"metrics": MetricRecord({"eval_loss": loss, "eval_acc": acc,
                                                        "num-examples": len(y)})}), reply_to=msg)
