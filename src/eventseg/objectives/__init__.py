"""What the encoder is taught (config group `objective`): predict the next window (`future`,
the default), reconstruct the history (`reconstruction`), recognise the customer
(`contrastive`). Each is a loss over a batch; the training module sums their weighted terms."""
