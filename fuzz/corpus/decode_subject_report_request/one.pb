
	asl-lecce 4e55154df097b2ed4a41f013b8a0562ddpo-asl