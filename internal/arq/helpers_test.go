package arq

// buffered is the number of received segments the conversation holds (in order and out of order).
func (c *Conv) buffered() int { return c.rcvQueue.len() + c.oooCount }
